"""What differs between single-label and multi-label models, in one place (as spaCy's TextCategorizer and
MultiLabel_TextCategorizer): targets, loss, probabilities, decisions, scores and prediction records.

  * SingleLabel: one softmax over the labels, cross-entropy, the most likely label.
  * MultiLabel: one sigmoid per label, binary cross-entropy, every label whose probability reaches its
    threshold (tuned on validation data and stored in config.json as "decision").

Training, evaluation and prediction ask the head; none of them branches on the kind of task.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from grutext.calibration import abstaining, ece, nll
from grutext.data import Split
from grutext.decision import Decision
from grutext.errors import DataError
from grutext.metrics import classification_metrics, multilabel_metrics, tune_decision
from grutext.prediction import Prediction, predictions


class Head:
    """The label set and how logits become probabilities, losses, scores and predictions."""

    multi_label = False
    decision: Decision | None = None  # multi-label: how probabilities become label sets

    temperature = 1.0  # divides the logits before the softmax or sigmoids (grutext.calibration)

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.index = {name: i for i, name in enumerate(self.labels)}

    def calibration_metrics(self, probs: Any, target: torch.Tensor) -> dict[str, float]:
        """ECE and NLL of these probabilities (grutext.calibration)."""
        p, t = np.asarray(probs, dtype=np.float64), target.numpy()
        # rounded: engines and thread counts differ in the last float digits, and reports should not
        return {"ece": round(ece(p, t, self.multi_label), 6), "nll": round(nll(p, t, self.multi_label), 6)}

    def check_known(self, split: Split) -> None:
        """A label the model never saw is an error, not a silent miss."""
        unknown = sorted({name for row in split.labels for name in row if name not in self.index})
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10])
            raise DataError(
                f"{split.origin}: labels the model does not know: {shown} (model labels: {', '.join(self.labels)}); "
                "check --label-column, or evaluate on data with the model's label set"
            )

    def targets(self, split: Split) -> torch.Tensor:
        """The split's targets; every label must be one the model knows (see `score_rows` for scoring)."""
        self.check_known(split)
        return self.target_rows(split.labels, split.origin)

    def check_rows(self, rows: Sequence[Sequence[str]], origin: str) -> None:
        """Refuse rows of the wrong shape for this head (several labels for a single-label model)."""

    def target_rows(self, rows: Sequence[Sequence[str]], origin: str) -> torch.Tensor:
        raise NotImplementedError

    def extended(self, extra: Sequence[str]) -> Head:
        """The same kind of head over these labels plus `extra`, which it never predicts."""
        raise NotImplementedError

    def score_rows(self, probs: Any, rows: Sequence[Sequence[str]], origin: str) -> dict[str, Any]:
        """Metrics of probabilities [N, C] against label rows. A label the model does not know still counts: a
        text holding one is an error it cannot avoid (a missed label, multi-label), and `unknown_labels` says
        how many texts held each. Scoring a test split must not abort a finished training run."""
        unknown = Counter(name for row in rows for name in set(row) if name not in self.index)
        if not unknown:
            return self.metrics(torch.as_tensor(np.asarray(probs)), self.target_rows(rows, origin))
        names = sorted(unknown)
        head = self.extended(names)
        p = np.asarray(probs)
        padded = np.concatenate([p, np.zeros((p.shape[0], len(names)), dtype=p.dtype)], axis=1)
        metrics = head.metrics(torch.as_tensor(padded), head.target_rows(rows, origin))
        if self.decision is not None:  # the model's own thresholds, not the extended head's
            metrics["decision"] = self.decision.to_dict(self.labels)
        return {**metrics, "unknown_labels": {name: unknown[name] for name in names}}

    def loss(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """The loss of logits [N, C] against targets, each class (or label's positives) weighted by `weight`."""
        w = None if weight is None else weight.to(logits.device)
        return self._loss(logits, target, w, smoothing, reduction)

    def _loss(
        self, logits: torch.Tensor, target: torch.Tensor, w: torch.Tensor | None, smoothing: float, reduction: str
    ) -> torch.Tensor:
        raise NotImplementedError

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, probs: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError

    def fit_decision(self, probs: torch.Tensor, target: torch.Tensor, metric: str, per_label: bool) -> None:
        """Tune what the head decides from probabilities on these (validation) rows; single-label: nothing."""

    def with_threshold(self, threshold: float | None) -> Head:
        """The head with one decision threshold for every label (multi-label); None, or single-label: self."""
        return self

    def decision_section(self) -> dict[str, Any] | None:
        """What config.json stores of the decision ("decision"), or None."""
        return None

    def predictions(self, probs: torch.Tensor) -> list[Prediction]:
        """One record per row of probabilities (see grutext.prediction)."""
        raise NotImplementedError


class SingleLabel(Head):
    def check_rows(self, rows: Sequence[Sequence[str]], origin: str) -> None:
        odd = next((i for i, row in enumerate(rows) if len(row) != 1), None)
        if odd is not None:
            raise DataError(
                f"{origin}: row {odd + 1} has {len(rows[odd])} labels, but the model is single-label "
                "(one label per text); evaluate it on single-label data"
            )

    def target_rows(self, rows: Sequence[Sequence[str]], origin: str) -> torch.Tensor:
        """[N] class ids."""
        self.check_rows(rows, origin)
        return torch.tensor([self.index[row[0]] for row in rows], dtype=torch.int64)

    def extended(self, extra: Sequence[str]) -> Head:
        return make_head([*self.labels, *extra], False, temperature=self.temperature)

    def _loss(
        self, logits: torch.Tensor, target: torch.Tensor, w: torch.Tensor | None, smoothing: float, reduction: str
    ) -> torch.Tensor:
        if w is None or not smoothing:
            return nn.functional.cross_entropy(logits, target, weight=w, label_smoothing=smoothing, reduction=reduction)
        # Each row weighted by its own class's weight. torch weights the smoothing term's classes instead (each
        # class's share of every row's loss by that class's weight), which pulls every row towards the heavy
        # classes: on sms_spam, balanced weights then cost spam precision (0.91 against 0.99 unweighted).
        rows = w[target]
        per_row = rows * nn.functional.cross_entropy(logits, target, label_smoothing=smoothing, reduction="none")
        if reduction == "none":
            return per_row
        return per_row.sum() if reduction == "sum" else per_row.sum() / rows.sum()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float() / self.temperature, dim=1)

    def metrics(self, probs: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        metrics = classification_metrics(target.tolist(), torch.as_tensor(probs).argmax(dim=1).tolist(), self.labels)
        p = np.asarray(probs, dtype=np.float64)
        return {**metrics, **self.calibration_metrics(p, target), "abstaining": abstaining(p, target.numpy())}

    def predictions(self, probs: torch.Tensor) -> list[Prediction]:
        return predictions(self.labels, probs, None)


class MultiLabel(Head):
    multi_label = True

    def __init__(self, labels: Sequence[str], decision: Decision | None = None) -> None:
        super().__init__(labels)
        self.decision: Decision = decision or Decision((0.5,) * len(self.labels), at_least_one=False)

    def target_rows(self, rows: Sequence[Sequence[str]], origin: str) -> torch.Tensor:
        """[N, C] multi-hot floats."""
        out = torch.zeros(len(rows), len(self.labels))
        for i, row in enumerate(rows):
            out[i, [self.index[name] for name in row]] = 1.0
        return out

    def extended(self, extra: Sequence[str]) -> Head:
        # A threshold above every probability: the new labels are never chosen, only missed.
        decision = Decision((*self.decision.thresholds, *(2.0,) * len(extra)), self.decision.at_least_one)
        return make_head([*self.labels, *extra], True, decision, self.temperature)

    def _loss(
        self, logits: torch.Tensor, target: torch.Tensor, w: torch.Tensor | None, smoothing: float, reduction: str
    ) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=w, reduction=reduction)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float() / self.temperature)

    def metrics(self, probs: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        metrics = multilabel_metrics(target, self.decision.apply(probs), self.labels)
        return {**metrics, **self.calibration_metrics(probs, target), "decision": self.decision.to_dict(self.labels)}

    def fit_decision(self, probs: torch.Tensor, target: torch.Tensor, metric: str, per_label: bool) -> None:
        self.decision = tune_decision(probs, target, self.labels, metric, per_label, self.decision.at_least_one)

    def with_threshold(self, threshold: float | None) -> Head:
        if threshold is None:
            return self
        return make_head(self.labels, True, self.decision.with_threshold(threshold), self.temperature)

    def decision_section(self) -> dict[str, Any]:
        return self.decision.to_dict(self.labels)

    def predictions(self, probs: torch.Tensor) -> list[Prediction]:
        return predictions(self.labels, probs, self.decision)


def make_head(
    labels: Sequence[str], multi_label: bool, decision: Decision | None = None, temperature: float = 1.0
) -> Head:
    head = MultiLabel(labels, decision) if multi_label else SingleLabel(labels)
    head.temperature = temperature
    return head
