"""The seam: the fast CPU backend and the reference compute the same model and the same training, and the
library leaves process-wide state alone."""

from __future__ import annotations

import copy
import itertools
import warnings
from pathlib import Path

import pytest
import torch

from grutext import backend, fast
from grutext.batching import collate
from grutext.config import DataShape, ModelConfig
from grutext.model import GRUClassifier
from tests.conftest import settled

CPU = torch.device("cpu")
SHAPE = DataShape(vocab_size=40, num_labels=3)


def pair(**options: object) -> tuple[GRUClassifier, GRUClassifier]:
    """The same weights, one model on each backend."""
    torch.manual_seed(0)
    model = GRUClassifier(settled(ModelConfig(embed_dim=8, hidden_size=6, dropout=0.0, **options)), SHAPE)  # type: ignore[arg-type]
    twin = copy.deepcopy(model)
    return backend.prepare(model, CPU, "fast"), backend.prepare(twin, CPU, "reference")


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    texts = [torch.randint(2, 40, (n,), generator=gen).tolist() for n in (1, 5, 9, 3, 7)]
    b = collate(texts, range(len(texts)))  # type: ignore[arg-type]
    return b.ids, b.lengths


@pytest.mark.parametrize(
    ("cell", "bidirectional", "layers", "pooling", "skip"),
    [
        *itertools.product(["gru", "cho2014"], [True, False], [1, 2], ["maxmean"], [False]),
        ("gru", True, 1, "last", False),
        ("gru", True, 1, "mean", True),
        ("cho2014", False, 1, "max", True),
        ("lstm", True, 2, "maxmean", False),
    ],
)
def test_outputs_and_gradients_agree(cell: str, bidirectional: bool, layers: int, pooling: str, skip: bool) -> None:
    fast_model, reference = pair(
        cell=cell, bidirectional=bidirectional, layers=layers, pooling=pooling, embedding_skip=skip
    )
    ids, lengths = batch()
    out = []
    for model in (fast_model, reference):
        model.train()
        logits = model(ids, lengths)
        logits.square().sum().backward()
        out.append((logits, {name: p.grad for name, p in model.named_parameters()}))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-5, atol=1e-6)
    for name, grad in out[1][1].items():
        torch.testing.assert_close(out[0][1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def grams(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Character n-gram rows for batch(seed)'s five texts, in the bigram table's buckets (few, so rows repeat)."""
    gen = torch.Generator().manual_seed(seed)
    rows = [(40 + torch.randint(0, 30, (n,), generator=gen)).tolist() for n in (4, 0, 12, 7, 2)]
    b = collate([[2]] * len(rows), range(len(rows)), rows)
    assert b.grams is not None and b.gram_counts is not None
    return b.grams, b.gram_counts


@pytest.mark.parametrize("chars", [False, True])
def test_a_short_training_run_agrees(chars: bool) -> None:
    """60 AdamW steps with clipping and the schedule: the backends' weights stay within 1e-3 of each other.
    With character n-grams LazyAdamW also updates the rows they read. Each such row is a small share of a
    long mean, so its gradient is tiny and its √v comes near eps, which LazyAdamW's closed form carries over
    gradient-free steps approximately (grutext/fast/optim.py): one such row drifts by 1.05e-3 in 60 steps
    here, while the logits agree to 1.4e-6."""
    fast_model, reference = pair(**({"char_ngrams": "2-3"} if chars else {}))
    assert (fast_model.cfg.char_span is not None) == chars
    kwargs = {"lr": 0.01, "weight_decay": 0.01, "grad_clip": 0.5, "total_steps": 60, "warmup": 0.1}
    optimizers = [
        backend.make_optimizer(m, name, **kwargs) for m, name in ((fast_model, "fast"), (reference, "reference"))
    ]  # type: ignore[arg-type]
    target = torch.tensor([0, 1, 2, 1, 0])
    for step in range(60):
        inputs = batch(step) + (grams(step) if chars else ())
        for model, opt in zip((fast_model, reference), optimizers, strict=True):
            model.train()
            loss = torch.nn.functional.cross_entropy(model(*inputs), target)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    assert optimizers[0].lr == pytest.approx(optimizers[1].lr)
    a, b = fast_model.state_dict(), reference.state_dict()
    for name in a:
        atol = 2e-3 if chars and name == "bigram_table.weight" else 1e-3
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=name)
    inputs = batch(99) + (grams(99) if chars else ())
    fast_model.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast_model(*inputs), reference(*inputs), rtol=0, atol=1e-5 if chars else 1e-3)


def test_an_untested_torch_falls_back_to_the_reference_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast, "unavailable", lambda: "torch 9.0 is outside the releases it was tested with")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend.choose(CPU) == "reference"
    assert len(caught) == 1 and issubclass(caught[0].category, backend.FastPathUnavailable)
    assert "torch 9.0" in str(caught[0].message) and "reference backend" in str(caught[0].message)
    with pytest.raises(Exception, match="cannot run"):
        backend.choose(CPU, "fast")


def test_this_torch_runs_the_fast_path() -> None:
    assert fast.unavailable() is None
    assert backend.choose(CPU) == "fast" and backend.choose(torch.device("meta")) == "reference"


def test_loading_a_checkpoint_leaves_the_thread_count_alone(trained: Path) -> None:
    import grutext

    torch.set_num_threads(2)
    model = grutext.load(str(trained))
    model.predict(["superb"])
    assert torch.get_num_threads() == 2


def test_training_restores_the_thread_count(split_dir: Path, tmp_path: Path) -> None:
    import grutext

    torch.set_num_threads(2)
    grutext.train(str(split_dir), tmp_path / "m", max_steps=2, embed_dim=8, hidden_size=8, vocab_size=100)
    assert torch.get_num_threads() == 2
