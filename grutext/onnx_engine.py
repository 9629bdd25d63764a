"""The ONNX engine: a checkpoint's model.onnx run by onnxruntime, with the checkpoint's tokenizer.json. It
never imports torch, so `grutext predict` starts in a fraction of a second; probabilities match the torch
engine's within 1e-4 (tests/test_onnx.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from grutext.artifacts import ONNX_FILE, WEIGHTS_FILE, Meta, MetaView, parameter_count, read_meta
from grutext.batching import TokenRows, inference_batches, pad, pad_grams
from grutext.calibration import temper
from grutext.config import INFER_BATCH_SIZE
from grutext.decision import Decision
from grutext.errors import CheckpointError
from grutext.prediction import Labeller, Prediction, check_settings, check_texts, predictions
from grutext.tokenizer import encode_inputs


def has_onnx(path: str | Path) -> bool:
    return (Path(path) / ONNX_FILE).is_file()


MAX_WORKERS = 8  # batches run at once


class OnnxPredictor(MetaView, Labeller):
    """The torch engine's Predictor interface (labels, predict_proba, predict, stream) on onnxruntime."""

    def __init__(
        self, meta: Meta, batch_size: int = INFER_BATCH_SIZE, threshold: float | None = None, workers: int = 0
    ) -> None:
        import onnxruntime as ort

        check_settings(batch_size, threshold)
        self.meta = meta
        self.batch_size = batch_size
        self.decision: Decision | None = meta.decision.with_threshold(threshold) if meta.decision else None
        # Batches run side by side, one thread each: a batch's matmuls are too small for threads to share (one
        # session with two intra-op threads ran 50k sst2 lines in 10.7 s, two one-thread workers in 5.0 s).
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.workers = workers or min(usable, MAX_WORKERS)
        self._pool: ThreadPoolExecutor | None = None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        path = meta.path / ONNX_FILE
        parameter_count(meta.path / WEIGHTS_FILE, meta.compression)  # the graph reads it: a damaged one says so first
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own error types
            raise CheckpointError(
                f"{path} cannot be loaded ({type(exc).__name__}); export it again with `grutext export "
                f"--model {meta.path}`"
            ) from None
        from grutext.onnx_export import fingerprint

        stored = self.session.get_modelmeta().custom_metadata_map
        expected = fingerprint(meta)
        if any(stored.get(key) != value for key, value in expected.items()):
            raise CheckpointError(
                f"{path} was not exported from this checkpoint's weights and settings (they changed since, or it "
                f"was copied from another model); export it again with `grutext export --model {meta.path}`"
            )

    @classmethod
    def load(
        cls, path: str | Path, batch_size: int = INFER_BATCH_SIZE, threshold: float | None = None
    ) -> OnnxPredictor:
        meta = read_meta(path)
        if not has_onnx(meta.path):
            raise CheckpointError(
                f"{meta.path} has no {ONNX_FILE}; run `grutext export --model {meta.path}` first, or use --engine torch"
            )
        return cls(meta, batch_size, threshold)

    def predict_proba(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Probabilities [N, C], rows in input order."""
        texts = check_texts(texts)
        return self.proba_of_ids(*encode_inputs(self.tokenizer, texts, self.tokenizer_config, self.model_config))

    def proba_of_ids(self, ids: TokenRows, grams: TokenRows | None = None) -> npt.NDArray[np.float32]:
        """Probabilities [N, C] of token-id rows, with their character n-grams for a model that reads them (as
        tokenizer.encode_inputs makes both)."""
        out = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        if not ids:
            return out
        if (grams is None) != (self.model_config.char_span is None):
            raise ValueError("pass grams exactly when the model reads character n-grams (encode_inputs says)")

        def run(index: list[int]) -> tuple[list[int], npt.NDArray[np.float32]]:
            batch, lengths = pad(ids, index)
            feed: dict[str, npt.NDArray[Any]] = {"ids": batch, "lengths": lengths}
            if grams is not None:
                feed["grams"], feed["gram_counts"] = pad_grams(grams, index)
            return index, self.session.run(None, feed)[0]

        batches = inference_batches(ids, self.batch_size)
        if self.workers > 1 and len(batches) > 1:
            if self._pool is None:  # onnxruntime releases the GIL while a batch runs
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="grutext-onnx")
            results = self._pool.map(run, batches)
        else:
            results = map(run, batches)
        for index, probs in results:
            out[index] = probs
        if self.meta.temperature != 1.0:  # the graph gives uncalibrated probabilities (grutext.calibration)
            out = temper(out, self.meta.temperature, self.multi_label).astype(np.float32)
        return out

    def records(self, probs: npt.NDArray[np.float32]) -> list[Prediction]:
        return predictions(self.labels, probs, self.decision)

    def close(self) -> None:
        """Stop the worker threads (they also end with the process)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
