"""Predictor: texts in, predictions out, input order kept, memory bounded however long the input is."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch

from grutext.batching import infer
from grutext.checkpoint import Checkpoint, load
from grutext.config import INFER_BATCH_SIZE
from grutext.head import Prediction
from grutext.tokenizer import encode

__all__ = ["Prediction", "Predictor", "format_prediction"]

_END = object()


class Predictor:
    """A loaded checkpoint that labels texts."""

    def __init__(
        self, checkpoint: Checkpoint, batch_size: int = INFER_BATCH_SIZE, threshold: float | None = None
    ) -> None:
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.device = next(checkpoint.model.parameters()).device
        self.head = checkpoint.head.with_threshold(threshold)

    @classmethod
    def load(
        cls, path: str | Path, device: str = "cpu", batch_size: int = INFER_BATCH_SIZE, threshold: float | None = None
    ) -> Predictor:
        """Load a checkpoint; `threshold` overrides a multi-label model's tuned thresholds."""
        return cls(load(path, torch.device(device)), batch_size, threshold)

    @property
    def multi_label(self) -> bool:
        return self.checkpoint.multi_label

    @property
    def labels(self) -> list[str]:
        return self.checkpoint.labels

    def predict_proba(self, texts: Sequence[str]) -> torch.Tensor:
        """Probabilities [N, C], rows in input order: softmax, or per-label sigmoid for multi-label."""
        if not texts:
            return torch.empty(0, len(self.labels))
        ids = encode(self.checkpoint.tokenizer, texts, self.checkpoint.tokenizer_config)
        return self.head.probabilities(infer(self.checkpoint.model, ids, self.device, self.batch_size))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One Prediction per text, in input order."""
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of texts; wrap a single text in a list")
        return self.head.predictions(self.predict_proba(list(texts)))

    def stream(self, texts: Iterable[str], chunk_size: int = 4096, wait: float = 0.05) -> Iterator[list[Prediction]]:
        """Predictions chunk by chunk. A chunk closes when full, or when the input pauses for `wait` seconds,
        so a slow producer (`tail -f`) sees each answer promptly while a fast one gets full batches. At most
        a few chunks are held in memory. Chunks are sorted by length into batches, so a bigger chunk pads
        less: on sst2 sentences 4,096 lines a chunk ran 1.2x faster than 1,024.

        The input is read by a thread, so that a pause can be noticed. When the caller stops early (closes the
        generator, or an error), the thread is told to stop and closes the input at its next record; a thread
        blocked in a read of an idle pipe cannot be woken, so it is a daemon."""
        lines: queue.Queue[object] = queue.Queue(maxsize=4 * chunk_size)
        stop = threading.Event()

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    lines.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def reader() -> None:
            source = iter(texts)
            try:
                for text in source:
                    if not put(text):
                        return
                put(_END)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(exc)
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()  # a generator's finally blocks close its files

        thread = threading.Thread(target=reader, name="grutext-predict-reader", daemon=True)
        thread.start()
        try:
            done = False
            while not done:
                chunk: list[str] = []
                item = lines.get()
                while True:
                    if item is _END:
                        done = True
                        break
                    if isinstance(item, BaseException):
                        if chunk:
                            yield self.predict(chunk)
                        raise item
                    chunk.append(item)  # type: ignore[arg-type]
                    if len(chunk) >= chunk_size:
                        break
                    try:
                        item = lines.get(timeout=wait)
                    except queue.Empty:
                        break
                if chunk:
                    yield self.predict(chunk)
        finally:
            stop.set()


def format_prediction(pred: Prediction, fmt: str, top_k: int | None = None) -> str:
    """One output line (without the newline)."""
    if pred.labels is not None:
        return _format_multi(pred, fmt, top_k)
    if fmt == "label":
        return "\t".join(label for label, _ in pred.top_k(top_k)) if top_k else pred.label
    if fmt == "tsv":
        pairs = pred.top_k(top_k) if top_k else [(pred.label, pred.score)]
        return "\t".join(f"{label}\t{score:.6f}" for label, score in pairs)
    record: dict[str, object] = {
        "label": pred.label,
        "score": round(pred.score, 6),
        "probs": {label: round(p, 6) for label, p in pred.probs.items()},
    }
    if top_k:
        record["top_k"] = [{"label": label, "score": round(p, 6)} for label, p in pred.top_k(top_k)]
    return json.dumps(record, ensure_ascii=False)


def _format_multi(pred: Prediction, fmt: str, top_k: int | None) -> str:
    """Multi-label: every label above its threshold (possibly none), most likely first."""
    chosen = pred.labels or []
    if fmt == "label":
        return ",".join(chosen)
    if fmt == "tsv":
        return f"{','.join(chosen)}\t{','.join(f'{pred.probs[label]:.6f}' for label in chosen)}"
    record: dict[str, object] = {
        "labels": [{"label": label, "score": round(pred.probs[label], 6)} for label in chosen],
        "probs": {label: round(p, 6) for label, p in pred.probs.items()},
    }
    if top_k:
        record["top_k"] = [{"label": label, "score": round(p, 6)} for label, p in pred.top_k(top_k)]
    return json.dumps(record, ensure_ascii=False)
