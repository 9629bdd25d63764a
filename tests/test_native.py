"""The native GRU kernel (grutext/fast/kernel.cpp): exact gradients, the reference's outputs at every real step,
padding skipped, and the TorchScript scan where no compiler builds it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from grutext.fast import native, scan_layer, scan_weights
from grutext.fast.scan import pair_scan as script_pair_scan
from grutext.model import Cho2014Layer, GRULayer, flat_index, reorder, reversal_index

pytestmark = pytest.mark.skipif(native.kernel() is None, reason="no C++ compiler here: the kernel is not built")

IN, H = 5, 4


def scan_args(batch: int, steps: int, lengths: list[int], reset_after: bool) -> tuple[torch.Tensor, ...]:
    return (
        torch.randn(batch, steps, IN, dtype=torch.float64, requires_grad=True),
        torch.tensor(lengths),
        torch.randn(3 * H, IN, dtype=torch.float64, requires_grad=True),
        torch.randn(3 * H, dtype=torch.float64, requires_grad=True),
        torch.randn(3 * H, H, dtype=torch.float64, requires_grad=True),
        torch.randn(3 * H, dtype=torch.float64, requires_grad=reset_after),
    )


@pytest.mark.parametrize("reset_after", [True, False])
def test_gradcheck_with_rows_of_different_lengths(reset_after: bool) -> None:
    """Double precision (libm's exp and tanh), two scans of different shapes, rows ending at different steps."""
    torch.manual_seed(0)
    a = scan_args(3, 5, [5, 3, 1], reset_after)
    b = scan_args(2, 5, [4, 4], reset_after)

    def run(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return native.pair_scan(reset_after, args[:6], args[6:])  # type: ignore[arg-type]

    assert torch.autograd.gradcheck(run, (*a, *b))


@pytest.mark.parametrize("reset_after", [True, False])
def test_equals_the_torchscript_scan_at_real_steps_and_is_zero_after(reset_after: bool) -> None:
    torch.manual_seed(1)
    x, lengths, *w = scan_args(4, 6, [6, 5, 2, 1], reset_after)
    ours = native.pair_scan(reset_after, (x[:2], lengths[:2], *w), (x[2:], lengths[2:], *w))  # type: ignore[arg-type]
    theirs = script_pair_scan(reset_after, (x[:2], *w), (x[2:], *w))  # type: ignore[arg-type]
    real = (torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
    ours_all, theirs_all = torch.cat(ours), torch.cat(theirs)
    torch.testing.assert_close(ours_all[real.expand_as(ours_all)], theirs_all[real.expand_as(theirs_all)])
    assert ours_all[~real.expand_as(ours_all)].abs().max() == 0


@pytest.mark.parametrize("layer_class", [GRULayer, Cho2014Layer])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_a_layer_in_float_matches_the_reference_forward_and_backward(layer_class: type, bidirectional: bool) -> None:
    """float32 (the vectorised exp and tanh), unsorted lengths: outputs and every gradient at real steps."""
    torch.manual_seed(2)
    forward_layer, backward_layer = layer_class(IN, H), layer_class(IN, H) if bidirectional else None
    lengths = torch.tensor([3, 7, 1, 7, 5])
    x = torch.randn(5, 7, IN, requires_grad=True)
    flat = flat_index(reversal_index(lengths, 7)) if bidirectional else None
    real = (torch.arange(7).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1).float()
    weights = torch.randn(7, H)  # a loss that reads every real step differently

    def loss_of(states: list[torch.Tensor]) -> torch.Tensor:
        return sum(((s * real) * weights).sum() for s in states)  # type: ignore[return-value]

    ours = scan_layer(forward_layer, backward_layer, x, flat, lengths)
    params = [x, *forward_layer.parameters(), *(backward_layer.parameters() if backward_layer else [])]
    ours_grads = torch.autograd.grad(loss_of(ours), params)
    reference = [forward_layer(x)] + ([backward_layer(reorder(x, flat))] if backward_layer and flat is not None else [])
    reference_grads = torch.autograd.grad(loss_of(reference), params)
    for o, r in zip(ours, reference, strict=True):
        torch.testing.assert_close(o * real, r * real, rtol=1e-5, atol=1e-6)
    for o, r in zip(ours_grads, reference_grads, strict=True):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-5)


def test_scan_weights_are_views_of_the_layer() -> None:
    layer = GRULayer(IN, H)
    assert scan_weights(layer)[0].data_ptr() == layer.rnn.weight_ih_l0.data_ptr()


def test_without_a_compiler_the_torchscript_scan_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without a C++ compiler: one warning naming what failed, then the TorchScript scan."""
    monkeypatch.setenv("GRUTEXT_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    native.kernel.cache_clear()
    try:
        with pytest.warns(native.NativeKernelUnavailable, match="no-such-compiler: not found"):
            assert native.kernel() is None
        layer, x = GRULayer(IN, H), torch.randn(2, 3, IN)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = scan_layer(layer, None, x, None, torch.tensor([3, 2]))
        torch.testing.assert_close(out[0], layer(x))
    finally:
        native.kernel.cache_clear()


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRUTEXT_NATIVE", "0")
    native.kernel.cache_clear()
    try:
        assert native.kernel() is None
    finally:
        native.kernel.cache_clear()
