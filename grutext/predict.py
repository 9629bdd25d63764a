"""Predictor: texts in, predictions out, input order kept, memory bounded however long the input is."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from grutext.batching import infer
from grutext.checkpoint import Checkpoint, load
from grutext.tokenizer import encode

OUTPUT_FORMATS = ("label", "tsv", "jsonl")
_END = object()


@dataclass
class Prediction:
    """The most likely label, its probability, and the probability of every label."""

    label: str
    score: float
    probs: dict[str, float]

    def top_k(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]


class Predictor:
    """A loaded checkpoint that labels texts."""

    def __init__(self, checkpoint: Checkpoint, batch_size: int = 256) -> None:
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.device = next(checkpoint.model.parameters()).device

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", batch_size: int = 256) -> Predictor:
        return cls(load(path, torch.device(device)), batch_size)

    @property
    def labels(self) -> list[str]:
        return self.checkpoint.labels

    def predict_proba(self, texts: Sequence[str]) -> torch.Tensor:
        """Probabilities [N, C], rows in input order."""
        if not texts:
            return torch.empty(0, len(self.labels))
        ids = encode(self.checkpoint.tokenizer, texts, self.checkpoint.tokenizer_config)
        logits = infer(self.checkpoint.model, ids, self.device, self.batch_size)
        return torch.softmax(logits, dim=1)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One Prediction per text, in input order."""
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of texts; wrap a single text in a list")
        probs = self.predict_proba(list(texts)).tolist()
        out = []
        for row in probs:
            best = max(range(len(row)), key=row.__getitem__)
            out.append(Prediction(self.labels[best], row[best], dict(zip(self.labels, row, strict=True))))
        return out

    def stream(self, texts: Iterable[str], chunk_size: int = 1024, wait: float = 0.05) -> Iterator[list[Prediction]]:
        """Predictions chunk by chunk. A chunk closes when full, or when the input pauses for `wait` seconds,
        so a slow producer (`tail -f`) sees each answer promptly while a fast one gets full batches. At most
        a few chunks are held in memory."""
        lines: queue.Queue[object] = queue.Queue(maxsize=4 * chunk_size)

        def reader() -> None:
            try:
                for text in texts:
                    lines.put(text)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                lines.put(exc)
            lines.put(_END)

        threading.Thread(target=reader, daemon=True).start()
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


def format_prediction(pred: Prediction, fmt: str, top_k: int | None = None) -> str:
    """One output line (without the newline)."""
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
