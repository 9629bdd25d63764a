"""The native GRU scans (kernel.cpp), built once per machine with torch's C++ extension builder, and the
autograd function that runs them. Part of grutext.fast; scan.py (TorchScript) is the fallback where no
compiler is at hand, and grutext.model the oracle in tests.

Why native: a GRU step on a sentence batch is a small matmul plus gate arithmetic, and TorchScript still
dispatches six to ten tensor ops a step; kernel.cpp does one BLAS call and one fused loop (profile and
figures in docs/performance.md). It also skips the padding after short texts in a batch.

The build: `torch.utils.cpp_extension.load` compiles kernel.cpp with the machine's C++ compiler and ninja
(a PyPI wheel) into a cache folder keyed by the source, torch, Python and CPU, so one build (about a
minute) serves every later run; `make install` builds it. GRUTEXT_NATIVE=0 turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

SOURCE = Path(__file__).with_name("kernel.cpp")
SWITCH = "GRUTEXT_NATIVE"
# torch's own flags for its CPU kernels: without -fno-trapping-math GCC will not vectorise the gate loops.
FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math"] + (
    ["-march=native"] if platform.machine() in ("x86_64", "AMD64") else []
)


class NativeKernelUnavailable(UserWarning):
    """The native kernel could not be built here; the TorchScript scan runs instead (slower)."""


def _cpu_model() -> str:
    """The CPU's model name: a kernel built with one CPU's instructions must not run on another's."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_folder() -> Path:
    """Where this machine's build lives: under GRUTEXT_CACHE, else XDG_CACHE_HOME or ~/.cache, per key."""
    key = hashlib.sha256(
        "|".join(
            [
                SOURCE.read_text(encoding="utf-8"),
                *FLAGS,
                torch.__version__,
                sys.version,
                platform.machine(),
                _cpu_model(),
            ]
        ).encode()
    ).hexdigest()[:16]
    root = os.environ.get("GRUTEXT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "grutext"
    )
    return Path(root) / "kernels" / f"gru_scan_{key}"


def _with_ninja_on_path() -> None:
    """torch's builder runs `ninja` from PATH; the ninja wheel's binary sits in the environment's bin folder,
    which is not on PATH when grutext is run by its full path without activating the environment."""
    try:
        import ninja

        folder = str(ninja.BIN_DIR)
    except (ImportError, AttributeError):
        return
    paths = os.environ.get("PATH", "").split(os.pathsep)
    if folder not in paths:
        os.environ["PATH"] = os.pathsep.join([folder, *paths])


def _build() -> ModuleType:
    from torch.utils import cpp_extension

    _with_ninja_on_path()
    folder = build_folder()
    folder.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("torch.utils.cpp_extension")  # its compiler-compatibility notes go to stderr
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = cpp_extension.load(
                name=folder.name,
                sources=[str(SOURCE)],
                build_directory=str(folder),
                extra_cflags=FLAGS,
                verbose=False,
            )
    finally:
        log.setLevel(level)
    return module  # type: ignore[no-any-return]


@functools.cache
def kernel() -> ModuleType | None:
    """The built kernel, or None (with one NativeKernelUnavailable warning) where it cannot be built."""
    if os.environ.get(SWITCH, "1") == "0":
        return None
    try:
        return _build()
    except Exception as exc:  # a missing compiler or ninja, a failed build: the TorchScript scan still runs
        first = _reason(exc)
        warnings.warn(
            f"the native GRU kernel could not be built ({first}); training uses the TorchScript scan (slower). "
            f"Install a C++ compiler and `pip install ninja`, or set {SWITCH}=0 to silence this",
            NativeKernelUnavailable,
            stacklevel=2,
        )
        return None


def _reason(exc: Exception) -> str:
    """The line of a failed build worth showing: the compiler's first error, else the exception's first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = ("error:", "not found", "No such file", "is required")
    chosen = next((line for line in lines if any(word in line for word in telling) and len(line) < 300), None)
    chosen = chosen or (lines[0] if lines else type(exc).__name__)
    return chosen if len(chosen) <= 200 else chosen[:197] + "..."


Scan = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class NativePairScan(torch.autograd.Function):
    """Two independent GRU scans (a, b), each (x [B, T, I], lengths [B] sorted longest first, W_ih, b_ih, W_hh,
    b_hh), at once (the second on torch's inter-op pool). Outputs [B, T, H] each, zero past each row's length."""

    @staticmethod
    def forward(ctx: Any, reset_after: bool, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = list(args[:6]), list(args[6:])
        module = kernel()
        assert module is not None
        oa, ga, ha, ob, gb, hb = module.pair_forward(a, b, reset_after)
        ctx.reset_after = reset_after
        ctx.save_for_backward(a[0], a[1], oa, ga, ha, a[2], a[4], b[0], b[1], ob, gb, hb, b[2], b[4])
        return oa.transpose(0, 1), ob.transpose(0, 1)

    @staticmethod
    def backward(ctx: Any, d_a: torch.Tensor, d_b: torch.Tensor) -> tuple[Any, ...]:
        xa, la, oa, ga, ha, Wa_ih, Wa_hh, xb, lb, ob, gb, hb, Wb_ih, Wb_hh = ctx.saved_tensors
        module = kernel()
        assert module is not None
        grads = module.pair_backward(
            [d_a, xa, la, oa, ga, ha, Wa_ih, Wa_hh], [d_b, xb, lb, ob, gb, hb, Wb_ih, Wb_hh], ctx.reset_after
        )
        da, db = grads[:5], grads[5:]
        return (None, da[0], None, *da[1:], db[0], None, *db[1:])


def pair_scan(reset_after: bool, a: Scan, b: Scan) -> tuple[torch.Tensor, torch.Tensor]:
    """Run two scans, each given as (x, lengths, W_ih, b_ih, W_hh, b_hh); see NativePairScan."""
    out: tuple[torch.Tensor, torch.Tensor] = NativePairScan.apply(reset_after, *a, *b)  # type: ignore[no-untyped-call]
    return out
