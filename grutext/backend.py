"""The one seam between the readable model and the fast CPU path, as nanoGPT switches to flash attention or
fused AdamW only after a capability check.

Two backends run the same model (the same parameters, the same checkpoint):
  * "reference": grutext.model as written (nn.GRU / nn.LSTM / the Cho et al. cell, nn.Dropout), trained with
    torch.optim.AdamW, LambdaLR and clip_grad_norm_. The GPU always uses it (cuDNN runs nn.GRU).
  * "fast": grutext.fast, on the CPU where this torch release supports it.

The training loop sees only `Optimizer`: zero_grad, step (clip, update, schedule), lr, and a state_dict.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar, cast

import torch
from torch import nn

from grutext.config import BACKENDS, DEVICES
from grutext.errors import ConfigError
from grutext.model import TextModel

M = TypeVar("M", bound=TextModel)


class FastPathUnavailable(UserWarning):
    """The fast CPU path cannot run with this torch; the reference runs instead."""


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA, then Apple's MPS, then the CPU; asking for a missing accelerator is an error."""
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for, but Apple's MPS is not available; use --device cpu")
    return torch.device(name)


def choose(device: torch.device, requested: str = "auto") -> str:
    """The backend for a device: fast on the CPU when it can run here (else a warning and the reference)."""
    if requested not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested == "reference" or device.type != "cpu":
        return "reference"
    from grutext import fast

    reason = fast.unavailable()
    if reason is None:
        return "fast"
    if requested == "fast":
        raise ConfigError(f"the fast CPU backend cannot run: {reason}")
    warnings.warn(f"{reason}; using the reference backend (slower)", FastPathUnavailable, stacklevel=2)
    return "reference"


def prepare(model: M, device: torch.device, backend: str) -> M:
    """Move `model` to `device` and let `backend` run it (the fast one builds its native kernel here, once per
    machine, so that the build happens before the first batch, not inside it)."""
    model = model.to(device)
    if backend == "fast":
        from grutext import fast

        fast.install(model)
    return model


def describe(backend: str) -> str:
    """The backend as a log line names it: "fast backend, native kernel" where the fast path's C++ scan runs."""
    if backend != "fast":
        return f"{backend} backend"
    from grutext.fast import native

    return "fast backend, " + ("native kernel" if native.kernel() is not None else "TorchScript scan")


def cpu_threads(device: torch.device, backend: str) -> int | None:
    """Intra-op threads that suit a backend on the CPU: one for the fast path, whose scans parallelise
    themselves (two forked tasks; more threads only oversubscribe 2 cores: 27k vs 36k tokens/s training).
    None: leave torch's setting."""
    return 1 if device.type == "cpu" and backend == "fast" else None


@contextlib.contextmanager
def torch_threads(device: torch.device, backend: str) -> Iterator[None]:
    """torch's intra-op thread count set for the backend while the block runs, and restored after: library
    code leaves process-wide state as it found it."""
    wanted = cpu_threads(device, backend)
    before = torch.get_num_threads()
    if wanted is not None and wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


class Optimizer(Protocol):
    """What the training loop needs of an optimizer; each backend keeps its bookkeeping behind `step()`."""

    @property
    def lr(self) -> float: ...

    def zero_grad(self) -> None: ...

    def step(self) -> None:
        """Clip the gradients, update the weights, advance the learning-rate schedule."""

    def state_dict(self) -> dict[str, Any]:
        """{"optimizer": ..., "scheduler": ...}, for --resume."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def warmup_then_linear_decay(total_steps: int, warmup: float) -> Callable[[int], float]:
    """The learning-rate factor: linear warmup over `warmup` of the planned steps, then linear decay to zero."""
    warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return factor


class ReferenceOptimizer:
    """torch.optim.AdamW (fused on a GPU), LambdaLR and clip_grad_norm_, exactly as a tutorial would."""

    def __init__(
        self, model: nn.Module, *, lr: float, weight_decay: float, grad_clip: float, factor: Callable[[int], float]
    ) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        fused = self.params[0].device.type == "cuda"
        self.adamw = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay, fused=fused)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.adamw, factor)
        self.grad_clip = grad_clip

    @property
    def lr(self) -> float:
        return float(self.adamw.param_groups[0]["lr"])

    def zero_grad(self) -> None:
        self.adamw.zero_grad(set_to_none=True)

    def step(self) -> None:
        nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.adamw.step()
        self.schedule.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.adamw.state_dict(), "scheduler": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adamw.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])


def make_optimizer(
    model: TextModel,
    backend: str,
    *,
    lr: float,
    weight_decay: float,
    grad_clip: float,
    total_steps: int,
    warmup: float,
) -> Optimizer:
    """AdamW with warmup and linear decay, clipped, on the backend's implementation."""
    factor = warmup_then_linear_decay(total_steps, warmup)
    if backend == "fast":
        from grutext import fast

        return cast(
            Optimizer,
            fast.make_optimizer(model, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip, factor=factor),
        )
    return ReferenceOptimizer(model, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip, factor=factor)
