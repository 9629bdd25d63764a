"""Scores from predictions: pure functions, no model.

Single-label: accuracy, macro/weighted F1, per-class P/R/F1/support, confusion matrix.
Multi-label: micro/macro/samples F1, subset accuracy, Hamming loss, per-label P/R/F1/support, and the
decision thresholds that turn sigmoid outputs into label sets (tuned on validation data).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from grutext.decision import Decision

THRESHOLD_GRID = [round(0.02 * i, 2) for i in range(1, 50)]  # 0.02 ... 0.98


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
        per_class[label] = {"precision": precision, "recall": recall, "f1": _f1(precision, recall), "support": support}
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


def multilabel_metrics(y_true: Any, y_pred: Any, labels: Sequence[str]) -> dict[str, Any]:
    """Multi-label metrics from 0/1 matrices [N, C]. Macro-F1 averages over labels with support."""
    t, p = torch.as_tensor(y_true).bool(), torch.as_tensor(y_pred).bool()  # tensors or arrays
    n = t.size(0)
    tp = (t & p).sum(0).double()  # [C]
    fp = (~t & p).sum(0).double()
    fn = (t & ~p).sum(0).double()
    support = t.sum(0)
    per_class: dict[str, dict[str, float | int]] = {}
    for c, label in enumerate(labels):
        precision = float(tp[c] / (tp[c] + fp[c])) if tp[c] + fp[c] else 0.0
        recall = float(tp[c] / support[c]) if support[c] else 0.0
        per_class[label] = {
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "support": int(support[c]),
        }
    present = [label for label in labels if per_class[label]["support"] > 0]
    micro_p = float(tp.sum() / (tp.sum() + fp.sum())) if tp.sum() + fp.sum() else 0.0
    micro_r = float(tp.sum() / (tp.sum() + fn.sum())) if tp.sum() + fn.sum() else 0.0
    row_tp = (t & p).sum(1).double()
    row_den = t.sum(1).double() + p.sum(1).double()
    samples = torch.where(row_den > 0, 2 * row_tp / row_den.clamp(min=1), torch.ones_like(row_den))
    return {
        "n": n,
        "micro_f1": _f1(micro_p, micro_r),
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "macro_f1": sum(per_class[lb]["f1"] for lb in present) / len(present) if present else 0.0,
        "samples_f1": float(samples.mean()) if n else 0.0,
        "subset_accuracy": float((t == p).all(1).double().mean()) if n else 0.0,
        "hamming_loss": float((t != p).double().mean()) if n else 0.0,
        "per_class": per_class,
        "labels": list(labels),
    }


def tune_decision(
    probs: torch.Tensor, y_true: torch.Tensor, labels: Sequence[str], metric: str, per_label: bool, at_least_one: bool
) -> Decision:
    """The global threshold that maximises `metric` (micro_f1 or macro_f1) on these rows; with `per_label`,
    then each label's own F1-maximising threshold (labels without positives keep the global one)."""
    best_t, best = 0.5, -1.0
    for t in THRESHOLD_GRID:
        score = multilabel_metrics(y_true, Decision((t,) * len(labels), at_least_one).apply(probs), labels)[metric]
        if score > best:
            best_t, best = t, score
    thresholds = [best_t] * len(labels)
    if per_label:
        truth = y_true.bool()
        for c in range(len(labels)):
            if not truth[:, c].any():
                continue
            scores = []
            for t in THRESHOLD_GRID:
                pred = probs[:, c] >= t
                tp = int((pred & truth[:, c]).sum())
                scores.append((2 * tp / (int(pred.sum()) + int(truth[:, c].sum())), -abs(t - best_t), t))
            thresholds[c] = max(scores)[2]
    return Decision(tuple(thresholds), at_least_one, per_label)
