"""Padding never changes a result; pooling and directions behave as documented."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from grutext.backend import prepare
from grutext.batching import collate, infer, pad_grams
from grutext.config import DEFAULT_BIGRAM_BUCKETS, DEFAULT_CHAR_NGRAMS, DataShape, ModelConfig
from grutext.errors import ConfigError
from grutext.fast import FastDropout
from grutext.fast.optim import clip_gradients
from grutext.model import GRUClassifier, bigram_ids, reversal_index
from grutext.ragged import Bags
from tests.conftest import settled

CPU = torch.device("cpu")


def make(backend: str = "fast", **kwargs: object) -> GRUClassifier:
    torch.manual_seed(0)
    kwargs = {"bigram_buckets": 0, **kwargs}  # the encoder alone unless a test asks for the bigram head
    cfg = ModelConfig(embed_dim=8, hidden_size=6, **kwargs)  # type: ignore[arg-type]
    return prepare(GRUClassifier(settled(cfg), DataShape(vocab_size=50, num_labels=3)), CPU, backend).eval()


def test_reversal_index_reverses_within_length_and_is_an_involution() -> None:
    idx = reversal_index(torch.tensor([3, 1, 5]), 5)
    assert idx.tolist() == [[2, 1, 0, 3, 4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]
    assert torch.equal(idx.gather(1, idx), torch.arange(5).expand(3, 5))


@pytest.mark.parametrize("backend", ["fast", "reference"])
@pytest.mark.parametrize(
    ("cell", "pooling", "bidirectional", "layers"),
    [
        *itertools.product(["gru"], ["last", "mean", "max", "maxmean"], [True, False], [1, 2]),
        *itertools.product(["cho2014", "lstm"], ["last", "max"], [True, False], [2]),
        ("gru", "skip-max", True, 1),
        ("gru", "skip-mean", False, 1),
        ("gru", "skip-maxmean", True, 1),
        ("gru", "bigram-maxmean", True, 1),
        ("cho2014", "bigram-last", False, 2),
    ],
)
def test_padding_never_changes_logits(cell: str, pooling: str, bidirectional: bool, layers: int, backend: str) -> None:
    skip, bigrams = pooling.startswith("skip-"), pooling.startswith("bigram-")
    model = make(
        backend,
        cell=cell,
        pooling=pooling.removeprefix("skip-").removeprefix("bigram-"),
        bidirectional=bidirectional,
        layers=layers,
        dropout=0.5,
        embedding_skip=skip,
        bigram_buckets=17 if bigrams else 0,
    )
    torch.manual_seed(1)
    texts = [torch.randint(2, 50, (n,)).tolist() for n in (1, 4, 9, 17, 2)]
    with torch.no_grad():
        alone = torch.cat([model(*_ids_lengths([t])) for t in texts])
        batched = model(*_ids_lengths(texts))  # every text but the longest is padded
        reordered = infer(model, list(reversed(texts)), torch.device("cpu"), batch_size=2)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reordered, alone.flip(0), rtol=1e-5, atol=1e-6)


def _ids_lengths(texts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = collate(texts, range(len(texts)))  # type: ignore[arg-type]
    return batch.ids, batch.lengths


def test_the_bigram_head_trains_beside_the_gru_and_is_averaged_with_it() -> None:
    model = make("reference", bigram_buckets=11, bigram_dim=4)
    ids, lengths = _ids_lengths([[5, 6, 7], [8, 9]])
    with torch.no_grad():
        averaged = model(ids, lengths)
        both = model.train()(ids, lengths)  # dropout 0.3 touches only the GRU's side
    assert model.heads == 2 and averaged.shape == (2, 3) and both.shape == (2, 6)
    with torch.no_grad():
        bag = model.bigram_classifier(model.bigram_bag(ids, lengths, None, None))
    torch.testing.assert_close(both[:, 3:], bag)
    # the bag is the mean of the rows of the tokens and of the hashed pairs (5,6), (6,7): no pair crosses the padding
    rows = [5, 6, 7, *bigram_ids(torch.tensor([[5, 6, 7]]), 50, 11)[0].tolist()]
    torch.testing.assert_close(model.bigram_bag(ids, lengths, None, None)[0], model.bigram_table.weight[rows].mean(0))
    assert make().heads == 1 and not hasattr(make(), "bigram_table")


def test_the_bigram_head_is_on_by_default_for_single_label_data_only() -> None:
    default = ModelConfig(embed_dim=4, hidden_size=3)
    single = GRUClassifier(default.resolved_for(False, "bpe"), DataShape(vocab_size=50, num_labels=3))
    multi = GRUClassifier(default.resolved_for(True, "bpe"), DataShape(vocab_size=50, num_labels=3, multi_label=True))
    assert single.cfg.bigram_buckets == DEFAULT_BIGRAM_BUCKETS and single.heads == 2
    assert single.bigram_table.num_embeddings == 50 + DEFAULT_BIGRAM_BUCKETS
    assert multi.cfg.bigram_buckets == 0 and multi.heads == 1 and not hasattr(multi, "bigram_table")
    chosen = dataclasses.replace(default, bigram_buckets=7)
    assert GRUClassifier(settled(chosen, True), DataShape(vocab_size=50, num_labels=3, multi_label=True)).heads == 2
    with pytest.raises(ValueError, match="resolved settings"):  # the model never settles a default itself
        GRUClassifier(default, DataShape(vocab_size=50, num_labels=3))


def test_the_bigram_head_reads_character_ngram_rows_into_the_same_mean() -> None:
    model = make("reference", bigram_buckets=11, bigram_dim=4, char_ngrams="2-3")
    ids, lengths = _ids_lengths([[5, 6, 7], [8, 9]])
    # distinct rows and their counts: the first text's n-grams are 52, 53, 53, 60 (batching.pad_grams)
    grams = torch.tensor([[52, 53, 60, 0], [55, 56, 57, 58]])
    counts = torch.tensor([[1.0, 2.0, 1.0, 0.0], [1.0, 1.0, 1.0, 3.0]])
    with torch.no_grad():
        bag = model.bigram_bag(ids, lengths, grams, counts)
        rows = [5, 6, 7, *bigram_ids(torch.tensor([[5, 6, 7]]), 50, 11)[0].tolist(), 52, 53, 53, 60]
        torch.testing.assert_close(bag[0], model.bigram_table.weight[rows].mean(0))  # the padding slot is not read
        # an unknown word ([UNK] alike) is told apart by its n-grams, and padding never changes a row
        other = model(ids, lengths, torch.tensor([[54, 53, 60, 0], [55, 56, 57, 58]]), counts)
        assert not torch.allclose(model(ids, lengths, grams, counts)[0], other[0])
        wider = torch.cat([grams, torch.full((2, 3), 59)], dim=1), torch.cat([counts, torch.zeros(2, 3)], dim=1)
        torch.testing.assert_close(model(ids, lengths, *wider), model(ids, lengths, grams, counts))
    with pytest.raises(ValueError, match="character n-grams"):
        model(ids, lengths)


def test_char_ngrams_resolve_to_the_word_tokenizer_s_single_label_head_and_refuse_what_cannot_read_them() -> None:
    default = ModelConfig()
    assert default.resolved_for(False, "word").char_ngrams == DEFAULT_CHAR_NGRAMS
    assert default.resolved_for(True, "word").char_ngrams == "0"  # no bigram head, so nothing to read them
    assert default.resolved_for(False, "bpe").char_ngrams == "0"
    assert default.resolved_for(False, "word", streaming=True).char_ngrams == "0"
    assert ModelConfig(char_ngrams="3-5").resolved_for(False, "word").char_span == (3, 5)
    assert ModelConfig(char_ngrams="0").resolved_for(False, "word").char_span is None
    assert ModelConfig(char_ngrams="3").char_ngrams == "3" and ModelConfig(
        char_ngrams="3", bigram_buckets=5
    ).char_span == (3, 3)
    for cfg, kind, streaming, message in [
        (ModelConfig(char_ngrams="2-4", bigram_buckets=0), "word", False, "bigram head"),
        (ModelConfig(char_ngrams="2-4"), "wordpiece", False, "--tokenizer word"),
        (ModelConfig(char_ngrams="2-4"), "word", True, "--streaming"),
    ]:
        with pytest.raises(ConfigError, match=message):
            cfg.resolved_for(False, kind, streaming)
    for bad in ["4-2", "0-3", "10", "2-", "x", "2-4-6"]:
        with pytest.raises(ConfigError, match="MIN-MAX"):
            ModelConfig(char_ngrams=bad)


def test_padding_tokens_are_not_read_even_if_nonzero() -> None:
    """Masks, not the PAD embedding, protect the result: garbage after the length changes nothing."""
    model = make(pooling="mean")
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 9, 9]])
    with torch.no_grad():
        out = model(ids, torch.tensor([3, 3]))
    torch.testing.assert_close(out[0], out[1])


def test_empty_text_is_one_pad_token() -> None:
    batch = collate([[], [4, 5]], [0, 1])
    assert batch.lengths.tolist() == [1, 2] and batch.ids[0].tolist() == [0, 0]
    assert make()(batch.ids, batch.lengths).shape == (2, 3)


def test_parameter_count_matches_the_architecture() -> None:
    model = make(bidirectional=True, layers=2)
    gru = lambda i, h: 3 * (i * h + h * h + 2 * h)  # noqa: E731
    expected = 50 * 8 + 2 * gru(8, 6) + 2 * gru(12, 6) + (2 * 12 * 3 + 3)  # maxmean: 2 x 12 features
    assert model.num_parameters() == expected


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"cell": "cho2014", "layers": 2},
        {"cell": "lstm", "bidirectional": False},
        {"embedding_skip": True, "layers": 3},
        {"pooling": "maxmean", "embedding_skip": True},
        {"bigram_buckets": 7, "bigram_dim": 5},
    ],
)
def test_parameter_shapes_match_the_model(options: dict[str, object]) -> None:
    from grutext.model import parameter_shapes

    model = make(**options)
    assert parameter_shapes(model.cfg, model.shape) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("backend", ["fast", "reference"])
@pytest.mark.parametrize("layers", [1, 2])
def test_bidirectional_encoder_pools_what_nn_gru_computes(layers: int, backend: str) -> None:
    """The last layer's backward states are pooled in their own (reversed) order: max and mean over them,
    and "last" pooling, must equal pooling nn.GRU(bidirectional=True)'s outputs in time order."""
    torch.manual_seed(1)
    T = 7
    reference = torch.nn.GRU(8, 6, num_layers=layers, bidirectional=True, batch_first=True).double()
    for pooling in ("last", "mean", "max", "maxmean"):
        model = make(backend, pooling=pooling, bidirectional=True, layers=layers, dropout=0.0).double()
        for depth in range(layers):
            for stack, suffix in ((model.encoder.forward_layers, ""), (model.encoder.backward_layers, "_reverse")):
                rnn = stack[depth].rnn
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(rnn, f"{name}_l0").data.copy_(getattr(reference, f"{name}_l{depth}{suffix}").data)
        ids = torch.randint(2, 50, (1, T))
        x = model.embedding(ids)
        out, h_n = reference(x)  # [1, T, 12], [2 * layers, 1, 6]
        pooled = {
            "max": out.amax(dim=1),
            "mean": out.mean(dim=1),
            "last": torch.cat([h_n[-2], h_n[-1]], dim=-1),
            "maxmean": torch.cat(
                [
                    out[..., :6].amax(dim=1),
                    out[..., :6].mean(dim=1),
                    out[..., 6:].amax(dim=1),
                    out[..., 6:].mean(dim=1),
                ],
                dim=-1,
            ),
        }[pooling]
        expected = model.classifier(pooled)
        torch.testing.assert_close(model(ids, torch.tensor([T])), expected, rtol=1e-9, atol=1e-9)


def test_dropout_keeps_the_expectation_and_is_off_in_eval() -> None:
    drop = FastDropout(0.3)
    x = torch.ones(200_000)
    torch.manual_seed(0)
    y = drop(x)
    zeros = float((y == 0).float().mean())
    assert abs(zeros - 0.3) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    assert abs(float(y.mean()) - 1.0) < 0.01
    drop.eval()
    assert drop(x) is x


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])
def test_clip_gradients_equals_clip_grad_norm(max_norm: float) -> None:
    """Both branches: a rescale when the norm is over the bound, and no change (not even rounding) under it."""
    torch.manual_seed(0)
    model = make()
    ids = torch.randint(2, 50, (4, 9))
    model.train()
    grads = []

    def ours(params: list[torch.nn.Parameter]) -> None:
        clip_gradients([p.grad for p in params if p.grad is not None], max_norm)

    for clip in (lambda p: torch.nn.utils.clip_grad_norm_(p, max_norm), ours):
        model.zero_grad()
        torch.manual_seed(1)
        model(ids, torch.full((4,), 9)).square().sum().backward()
        params = list(model.parameters())
        clip(params)
        grads.append([p.grad.clone() for p in params if p.grad is not None])
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def test_pad_grams_counts_each_text_s_distinct_rows() -> None:
    ids, counts = pad_grams([[7, 3, 7, 7], [], [5]], [0, 1, 2])
    assert ids.tolist() == [[3, 7], [0, 0], [5, 0]] and counts.tolist() == [[1, 3], [0, 0], [1, 0]]


def test_bags_pad_as_pad_grams_does_and_join_in_order() -> None:
    lists = [[7, 3, 7, 7], [], [5], [9, 9, 2**20]]
    text_of = np.repeat(np.arange(len(lists)), [len(r) for r in lists])
    rows = np.array([g for r in lists for g in r], dtype=np.int64)
    bags = Bags.of(text_of, rows, len(lists))
    for index in ([0, 1, 2, 3], [3, 0], [1]):
        got, want = bags.pad(index), pad_grams(lists, index)
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
    assert [sorted(b.tolist()) for b in bags] == [sorted(r) for r in lists]
    halves = Bags.join([Bags.of(text_of[:5], rows[:5], 3), Bags.of(text_of[5:] - 3, rows[5:], 1)])
    assert [b.tolist() for b in halves] == [b.tolist() for b in bags]
    wide = Bags.of(np.array([0, 70_000]), np.array([2**30, 1]), 70_001)  # (text, row) past 32 bits
    assert wide[70_000].tolist() == [1] and wide[0].tolist() == [2**30]
    many = Bags.of(np.zeros(70_000, np.int64), np.full(70_000, 9), 1)  # one row 70,000 times in a text
    assert many.pad([0])[1].tolist() == [[70_000.0]]
