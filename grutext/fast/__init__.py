"""The fast CPU backend: the same model and the same optimizer arithmetic as the reference, faster on the CPU.

  * scan.py: the GRUs' recurrences with hand-written backward passes, two at a time (TorchScript + jit.fork);
  * optim.py: AdamW for the embedding table paid only for the rows a batch reads (LazyAdamW), and torch's
    fused AdamW kernel without torch.optim's import cost (FusedAdamW), behind one `step()`;
  * FastDropout: nn.Dropout's function from a uniform draw (torch's Bernoulli sampler is slower on the CPU).

Every private or deprecated torch API grutext uses lives in this package (torch._fused_adamw_, sparse
gradients' _indices/_values, torch._foreach_mul_, TorchScript), so it runs only where `unavailable()` says
it can: on a torch release it was tested with. Elsewhere grutext.backend uses the reference with one warning.
tests/test_backend.py holds the two backends equal: outputs and gradients, and a short training run.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import torch
from torch import nn

from grutext.model import Cho2014Layer, GRULayer, TextModel, reorder, run_layer

# The torch releases whose private kernels this package was tested with (inclusive).
TESTED_TORCH = ((2, 6), (2, 14))


@functools.cache
def unavailable() -> str | None:
    """None when the fast backend can run with this torch; else why not, in a sentence."""
    match = re.match(r"(\d+)\.(\d+)", torch.__version__)
    version = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    low, high = TESTED_TORCH
    if not low <= version <= high:
        return (
            f"torch {torch.__version__} is outside the releases the fast CPU path was tested with "
            f"({low[0]}.{low[1]} to {high[0]}.{high[1]})"
        )
    for name in ("_fused_adamw_", "_foreach_mul_"):
        if not hasattr(torch, name):
            return f"torch {torch.__version__} lacks torch.{name}"
    try:
        from grutext.fast import scan  # noqa: F401 - compiles the scans with TorchScript
    except Exception as exc:  # TorchScript's failures have no common type
        return f"TorchScript cannot compile the scan here ({type(exc).__name__}: {exc})"
    return None


class FastDropout(nn.Module):
    """Inverted dropout from a uniform draw: nn.Dropout's function, but on the CPU torch's Bernoulli sampler
    costs 0.5 ms for a [32, 10, 128] batch against 0.2 ms for rand + compare, and the embedding dropout runs
    at every training step. The mask stays in floats (in-place ge_ writes 1.0 or 0.0): an op mixing in a bool
    tensor takes the CPU's slow path, forward and backward."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))  # 0 or 1/(1-p), computed in floats
        return x * mask


def scan_weights(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A GRU layer's parameters as the scan takes them: (W_ih [3H, I], b_ih, W_hh [3H, H], b_hh)."""
    if isinstance(layer, GRULayer):  # nn.GRU's own, rows (r, z, n)
        rnn = layer.rnn
        return rnn.weight_ih_l0, rnn.bias_ih_l0, rnn.weight_hh_l0, rnn.bias_hh_l0  # type: ignore[return-value]
    if isinstance(layer, Cho2014Layer):  # the x- and h-columns of W_z, W_r and W, rows (z, r, n); no b_hh
        c = layer.cell
        H = c.hidden_size
        W_ih = torch.cat([c.W_z[:, H:], c.W_r[:, H:], c.W[:, H:]])
        W_hh = torch.cat([c.W_z[:, :H], c.W_r[:, :H], c.W[:, :H]])
        return W_ih, torch.cat([c.b_z, c.b_r, c.b]), W_hh, W_hh.new_zeros(3 * H)
    raise TypeError(f"no scan for {type(layer).__name__}")


def scan_layer(
    forward_layer: nn.Module,
    backward_layer: nn.Module | None,
    x: torch.Tensor,
    flat: torch.Tensor | None,
    lengths: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """One GRU layer through two parallel scans: the two directions, or two halves of the batch. With `lengths`
    and the native kernel, rows run longest first and each stops at its text's end (its states after the end
    are zero: pooling and the next layer never read them)."""
    if x.device.type != "cpu":
        return run_layer(forward_layer, backward_layer, x, flat)
    from grutext.fast import native

    reset_after = bool(forward_layer.reset_after)
    if lengths is not None and x.dtype in (torch.float32, torch.float64) and native.kernel() is not None:
        return _native_layer(forward_layer, backward_layer, x, flat, lengths, reset_after)
    from grutext.fast.scan import pair_scan

    w = scan_weights(forward_layer)

    if backward_layer is not None and flat is not None:
        return list(pair_scan(reset_after, (x, *w), (reorder(x, flat), *scan_weights(backward_layer))))
    half = (x.size(0) + 1) // 2
    return [torch.cat(pair_scan(reset_after, (x[:half], *w), (x[half:], *w)), dim=0)]


def _native_layer(
    forward_layer: nn.Module,
    backward_layer: nn.Module | None,
    x: torch.Tensor,
    flat: torch.Tensor | None,
    lengths: torch.Tensor,
    reset_after: bool,
) -> list[torch.Tensor]:
    """scan_layer on the native kernel. Its rows must come longest first: the batch is put in that order (and
    back) only where it is not already; one direction's batch is dealt to the two threads alternately, so each
    gets as many long rows as the other."""
    from grutext.fast.native import pair_scan

    lengths = lengths.to(torch.int64)
    w = scan_weights(forward_layer)
    order = None if bool((lengths[:-1] >= lengths[1:]).all()) else torch.argsort(lengths, descending=True, stable=True)
    if backward_layer is not None and flat is not None:
        xb = reorder(x, flat)
        if order is not None:
            x, xb, lengths = x.index_select(0, order), xb.index_select(0, order), lengths.index_select(0, order)
        states = list(pair_scan(reset_after, (x, lengths, *w), (xb, lengths, *scan_weights(backward_layer))))
    else:
        order = torch.arange(x.size(0)) if order is None else order
        order = torch.cat([order[0::2], order[1::2]])
        x, lengths = x.index_select(0, order), lengths.index_select(0, order)
        half = (x.size(0) + 1) // 2
        a, b = pair_scan(reset_after, (x[:half], lengths[:half], *w), (x[half:], lengths[half:], *w))
        states = [torch.cat([a, b], dim=0)]
    if order is None:
        return states
    back = torch.empty_like(order)
    back[order] = torch.arange(order.numel())
    return [s.index_select(0, back) for s in states]


def install(model: TextModel) -> None:
    """Run `model` on the fast path: the scan for its GRU layers, FastDropout for its dropouts. Parameters and
    state_dict are untouched, so a checkpoint does not depend on the backend that trained it."""
    if model.cfg.cell in ("gru", "cho2014"):
        from grutext.fast import native

        native.kernel()  # built (once per machine) or found unavailable now, before the first batch
        model.encoder.runner = scan_layer
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.Dropout):
                setattr(module, name, FastDropout(child.p))


def make_optimizer(
    model: TextModel, *, lr: float, weight_decay: float, grad_clip: float, factor: Callable[[int], float]
) -> object:
    """The fast backend's TrainingOptimizer (see grutext.backend.Optimizer for the interface). Training on it
    turns the model's embedding tables' gradients sparse: LazyAdamW updates the rows a batch reads."""
    from grutext.fast.optim import TrainingOptimizer

    tables = model.tables()
    for table in tables:
        table.sparse = True
    return TrainingOptimizer(model, tables, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip, factor=factor)
