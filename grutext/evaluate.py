"""Scores for a checkpoint on labelled data: accuracy, macro/weighted F1, per-class P/R/F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from grutext.batching import infer
from grutext.checkpoint import Checkpoint
from grutext.data import Split
from grutext.errors import DataError
from grutext.tokenizer import encode


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Single-label metrics from class indices. A class never predicted has precision 0 (not NaN)."""
    n_classes = len(labels)
    matrix = [[0] * n_classes for _ in range(n_classes)]  # rows: true class, columns: predicted class
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[t][p] += 1
    n = len(y_true)
    per_class: dict[str, dict[str, float | int]] = {}
    for c, label in enumerate(labels):
        tp = matrix[c][c]
        predicted = sum(matrix[r][c] for r in range(n_classes))
        support = sum(matrix[c])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        per_class[label] = {
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "support": support,
        }
    present = [label for label in labels if per_class[label]["support"] > 0]
    macro = sum(per_class[lb]["f1"] for lb in present) / len(present) if present else 0.0
    weighted = sum(per_class[lb]["f1"] * per_class[lb]["support"] for lb in present) / n if n else 0.0
    return {
        "n": n,
        "accuracy": sum(matrix[c][c] for c in range(n_classes)) / n if n else 0.0,
        "macro_f1": macro,
        "weighted_f1": weighted,
        "per_class": per_class,
        "confusion_matrix": matrix,
        "labels": list(labels),
    }


def label_indices(split: Split, labels: Sequence[str]) -> list[int]:
    """Class index per row; a label the model never saw is an error, not a silent miss."""
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({row[0] for row in split.labels if row[0] not in index})
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10])
        raise DataError(
            f"{split.origin}: labels the model does not know: {shown} (model labels: {', '.join(labels)}); "
            "check --label-column, or evaluate on data with the model's label set"
        )
    return [index[row[0]] for row in split.labels]


def evaluate(checkpoint: Checkpoint, split: Split, batch_size: int = 256) -> dict[str, Any]:
    """Run the model over a split and score it."""
    y_true = label_indices(split, checkpoint.labels)
    ids = encode(checkpoint.tokenizer, split.texts, checkpoint.tokenizer_config)
    device = next(checkpoint.model.parameters()).device
    logits = infer(checkpoint.model, ids, device, batch_size)
    y_pred = torch.argmax(logits, dim=1).tolist()
    return classification_metrics(y_true, y_pred, checkpoint.labels)
