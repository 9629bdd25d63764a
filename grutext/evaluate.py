"""Score a model on labelled data, whichever engine runs it: the head turns its probabilities into the task's
metrics (see grutext.metrics)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from grutext.calibration import MIN_SCORES, abstaining
from grutext.data import Split
from grutext.decision import Decision
from grutext.head import make_head

COUNTED = "they count as errors in the scores (a model predicts only the labels of its training split)"


class Engine(Protocol):
    """What evaluate needs of a loaded model (grutext.predict.Predictor or grutext.onnx_engine.OnnxPredictor)."""

    @property
    def labels(self) -> list[str]: ...

    @property
    def multi_label(self) -> bool: ...

    decision: Decision | None

    def predict_proba(self, texts: Sequence[str]) -> Any: ...


def evaluate(engine: Engine, split: Split, min_score: float | None = None) -> dict[str, Any]:
    """Run the model over a split and score it, with the engine's decision (thresholds) for multi-label. Labels
    the model does not know count against it, with a warning (see Head.score_rows). Single-label metrics hold
    the coverage and accuracy of abstaining at a few --min-score values, and at `min_score` if given."""
    head = make_head(engine.labels, engine.multi_label, engine.decision)  # the engine's probabilities are calibrated
    head.check_rows(split.labels, split.origin)  # before the model runs
    probs = np.asarray(engine.predict_proba(split.texts))
    metrics = head.score_rows(probs, split.labels, split.origin)
    if min_score is not None and not engine.multi_label:
        target = np.array([head.index.get(row[0], -1) for row in split.labels])  # -1: a label it cannot give
        metrics["abstaining"] = abstaining(probs, target, (*MIN_SCORES, min_score))
    if "unknown_labels" in metrics:
        warnings.warn(unknown_labels_note(split.origin, metrics["unknown_labels"]), stacklevel=2)
    return metrics


def unknown_labels_note(origin: str, unknown: dict[str, int], consequence: str = COUNTED) -> str:
    """The warning for labels a model (or its training split) does not know."""
    shown = ", ".join(f"{name!r} ({n} text{'s' if n != 1 else ''})" for name, n in list(unknown.items())[:10])
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    return f"{origin}: labels the model does not know: {shown}{more}; {consequence}"
