"""Calibrated probabilities: one temperature, fitted on validation (Guo et al. 2017, "On Calibration of Modern
Neural Networks"), divides the logits before the softmax (or each sigmoid). It changes no prediction's label,
only how sure the model says it is; a checkpoint stores it in config.json ("calibration") and both engines apply
it. numpy only, so the torch-free engine applies it exactly as the torch one does.

  * ECE, the expected calibration error: over 15 equal-width bins of confidence, the gap between the mean
    confidence and the accuracy, weighted by the share of predictions in the bin. Single-label: the top label's
    probability against whether it is right; multi-label: every (text, label) probability against the truth.
  * NLL: the mean negative log-likelihood of the truth (multi-label: the mean binary cross-entropy).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

BINS = 15
EPS = 1e-7
Array = npt.NDArray[np.float64]


def temper(probs: npt.ArrayLike, temperature: float, multi_label: bool) -> Array:
    """Probabilities of logits / temperature, from the probabilities of the logits (what the ONNX graph gives):
    softmax(z / T) is p^(1/T) normalised, and sigmoid(z / T) is sigmoid(logit(p) / T)."""
    p = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0 or p.size == 0:
        return p
    if multi_label:
        q = np.clip(p, EPS, 1 - EPS)
        return 1.0 / (1.0 + np.exp(-(np.log(q) - np.log1p(-q)) / temperature))
    logs = np.log(np.clip(p, 1e-300, None)) / temperature
    logs -= logs.max(axis=1, keepdims=True)
    out = np.exp(logs)
    return np.asarray(out / out.sum(axis=1, keepdims=True))


def nll(probs: npt.ArrayLike, target: npt.ArrayLike, multi_label: bool) -> float:
    p, t = np.asarray(probs, dtype=np.float64), np.asarray(target)
    if p.size == 0:
        return 0.0
    if multi_label:
        q = np.clip(p, EPS, 1 - EPS)
        return float(-(t * np.log(q) + (1 - t) * np.log1p(-q)).mean())
    return float(-np.log(np.clip(p[np.arange(len(t)), t.astype(np.int64)], EPS, None)).mean())


def ece(probs: npt.ArrayLike, target: npt.ArrayLike, multi_label: bool, bins: int = BINS) -> float:
    """The expected calibration error (see the module docstring)."""
    p, t = np.asarray(probs, dtype=np.float64), np.asarray(target)
    if p.size == 0:
        return 0.0
    if multi_label:
        confidence, correct = p.reshape(-1), t.reshape(-1).astype(np.float64)
    else:
        confidence, correct = p.max(axis=1), (p.argmax(axis=1) == t).astype(np.float64)
    return reliability(confidence, correct, bins)[0]


def reliability(
    confidence: npt.NDArray[np.float64], correct: npt.NDArray[np.float64], bins: int = BINS
) -> tuple[float, list[tuple[float, float, int]]]:
    """ECE over equal-width bins of confidence ((k/bins, (k+1)/bins], 0 in the first), and per non-empty bin
    (mean confidence, accuracy, count): the reliability diagram's points."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, total = [], 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        if count:
            conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
            total += count / len(confidence) * abs(acc - conf)
            rows.append((conf, acc, count))
    return float(total), rows


def fit_temperature(probs: npt.ArrayLike, target: npt.ArrayLike, multi_label: bool) -> float:
    """The temperature that minimises the validation cross-entropy: a golden-section search over log T in
    [-3, 3] (the loss is smooth and, in T, has one minimum), to a ratio of 1e-4. Searched from the
    probabilities, so it needs neither torch's optimisers nor the logits.

    The targets are smoothed as Platt (1999) smooths his: (n + 1) / (n + 2) for the truth, 1 / (n + 2) shared
    by the rest. On a small validation split that the model gets all right, the plain NLL falls as T falls to
    0 and would make every probability 0 or 1; the smoothed one stops where the evidence does."""
    p, t = np.asarray(probs, dtype=np.float64), np.asarray(target)
    if p.size == 0:
        return 1.0
    soft = smoothed_targets(p, t, multi_label)

    def loss(log_t: float) -> float:
        q = np.clip(temper(p, math.exp(log_t), multi_label), EPS, 1 - EPS)
        if multi_label:
            return float(-(soft * np.log(q) + (1 - soft) * np.log1p(-q)).mean())
        return float(-(soft * np.log(q)).sum(axis=1).mean())

    low, high = -3.0, 3.0
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    while high - low > 1e-4:
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    best = math.exp((low + high) / 2)
    return best if loss(math.log(best)) < loss(0.0) else 1.0


def smoothed_targets(p: Array, t: npt.NDArray[np.generic], multi_label: bool) -> Array:
    """Platt's targets: multi-label, per label, (positives + 1) / (positives + 2) for a positive and
    1 / (negatives + 2) for a negative; single-label, (n + 1) / (n + 2) for the true label of n rows."""
    if multi_label:
        truth = t.astype(np.float64)
        positives, negatives = truth.sum(axis=0), (1 - truth).sum(axis=0)
        return np.asarray(truth * (positives + 1) / (positives + 2) + (1 - truth) / (negatives + 2))
    n, k = p.shape
    share = 1.0 / (n + 2)
    soft = np.full((n, k), share / max(k - 1, 1))
    soft[np.arange(n), t.astype(np.int64)] = 1.0 - share
    return soft


MIN_SCORES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)  # the --min-score values evaluate shows


def abstaining(
    probs: npt.ArrayLike, target: npt.ArrayLike, min_scores: tuple[float, ...] = MIN_SCORES
) -> list[dict[str, float | None]]:
    """Single-label: for each --min-score, the share of texts answered (coverage) and the accuracy on them
    (None where none is answered). What `predict --min-score` would give on this data."""
    p, t = np.asarray(probs, dtype=np.float64), np.asarray(target)
    if p.size == 0:
        return []
    top, right = p.max(axis=1), p.argmax(axis=1) == t
    rows: list[dict[str, float | None]] = []
    for score in sorted(set(min_scores)):
        kept = top >= score
        accuracy = round(float(right[kept].mean()), 6) if kept.any() else None
        rows.append({"min_score": score, "coverage": round(float(kept.mean()), 6), "accuracy": accuracy})
    return rows


def coverage_curve(probs: npt.ArrayLike, target: npt.ArrayLike, points: int = 50) -> list[tuple[float, float]]:
    """(coverage, accuracy) when only the most confident share of texts is answered, at `points` coverages
    from 1/points to 1: the report's accuracy-coverage chart."""
    p, t = np.asarray(probs, dtype=np.float64), np.asarray(target)
    if p.size == 0:
        return []
    order = np.argsort(-p.max(axis=1), kind="stable")
    right = (p.argmax(axis=1) == t)[order].astype(np.float64)
    running = np.cumsum(right) / np.arange(1, len(right) + 1)
    out = []
    for i in range(1, points + 1):
        n = max(1, round(len(right) * i / points))
        out.append((n / len(right), float(running[n - 1])))
    return out
