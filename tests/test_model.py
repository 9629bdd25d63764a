"""Padding never changes a result; pooling and directions behave as documented."""

from __future__ import annotations

import itertools

import pytest
import torch

from grutext.batching import collate, infer
from grutext.config import ModelConfig
from grutext.model import GRUClassifier, reversal_index


def make(**kwargs: object) -> GRUClassifier:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, num_labels=3, embed_dim=8, hidden_size=6, **kwargs)  # type: ignore[arg-type]
    return GRUClassifier(cfg).eval()


def test_reversal_index_reverses_within_length_and_is_an_involution() -> None:
    idx = reversal_index(torch.tensor([3, 1, 5]), 5)
    assert idx.tolist() == [[2, 1, 0, 3, 4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]
    assert torch.equal(idx.gather(1, idx), torch.arange(5).expand(3, 5))


@pytest.mark.parametrize(
    ("cell", "pooling", "bidirectional", "layers"),
    [
        *itertools.product(["torch"], ["last", "mean", "max"], [True, False], [1, 2]),
        *itertools.product(["seed", "lstm"], ["last", "max"], [True, False], [2]),
        ("torch", "skip-max", True, 1),
        ("torch", "skip-mean", False, 1),
    ],
)
def test_padding_never_changes_logits(cell: str, pooling: str, bidirectional: bool, layers: int) -> None:
    skip = pooling.startswith("skip-")
    model = make(
        cell=cell,
        pooling=pooling.removeprefix("skip-"),
        bidirectional=bidirectional,
        layers=layers,
        dropout=0.5,
        embedding_skip=skip,
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
    expected = 50 * 8 + 2 * gru(8, 6) + 2 * gru(12, 6) + (12 * 3 + 3)
    assert model.num_parameters() == expected


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"cell": "seed", "layers": 2},
        {"cell": "lstm", "bidirectional": False},
        {"embedding_skip": True, "layers": 3},
    ],
)
def test_parameter_shapes_match_the_model(options: dict[str, object]) -> None:
    from grutext.model import parameter_shapes

    model = make(**options)
    assert parameter_shapes(model.cfg) == {k: tuple(v.shape) for k, v in model.state_dict().items()}
