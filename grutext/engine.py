"""Which engine runs a checkpoint: torch (the model as trained) or ONNX (model.onnx on onnxruntime, no torch
import). `auto` takes ONNX when the checkpoint has model.onnx and the model runs on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grutext.config import ENGINES, INFER_BATCH_SIZE
from grutext.errors import UsageError
from grutext.onnx_engine import OnnxPredictor, has_onnx


def choose_engine(path: str | Path, engine: str = "auto", device: str = "cpu") -> str:
    if engine not in ENGINES:
        raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "auto":
        return "onnx" if device == "cpu" and has_onnx(path) else "torch"
    if engine == "onnx" and device != "cpu":
        raise UsageError(f"--engine onnx runs on the CPU, not --device {device}; use --engine torch")
    return engine


def load_engine(
    path: str | Path,
    engine: str = "auto",
    device: str = "cpu",
    batch_size: int = INFER_BATCH_SIZE,
    threshold: float | None = None,
) -> Any:
    """A Predictor (torch) or OnnxPredictor: the same interface (labels, config, decision, predict_proba,
    predict, stream). torch is imported only for the torch engine."""
    if choose_engine(path, engine, device) == "onnx":
        return OnnxPredictor.load(path, batch_size, threshold)
    from grutext.backend import resolve_device
    from grutext.predict import Predictor

    return Predictor.load(path, str(resolve_device(device)), batch_size, threshold)


def use_threads(model: Any) -> None:
    """Set torch's intra-op threads to what the torch engine's backend wants (one for the fast CPU path, whose
    scans parallelise themselves). Process-wide: for the command line and a server process, not a library."""
    checkpoint = getattr(model, "checkpoint", None)
    if checkpoint is None:  # the ONNX engine sets its own session's threads
        return
    import torch

    from grutext.backend import cpu_threads

    threads = cpu_threads(next(checkpoint.model.parameters()).device, checkpoint.backend)
    if threads is not None:
        torch.set_num_threads(threads)
