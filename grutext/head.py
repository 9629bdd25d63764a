"""What differs between single-label and multi-label models, in one place (as spaCy's TextCategorizer and
MultiLabel_TextCategorizer): targets, loss, probabilities, decisions, scores and prediction records.

  * SingleLabel: one softmax over the labels, cross-entropy, the most likely label.
  * MultiLabel: one sigmoid per label, binary cross-entropy, every label whose probability reaches its
    threshold (tuned on validation data and stored in config.json as "decision").

Training, evaluation and prediction ask the head; none of them branches on the kind of task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from grutext.data import Split
from grutext.decision import Decision
from grutext.errors import DataError
from grutext.metrics import classification_metrics, multilabel_metrics, tune_decision


@dataclass
class Prediction:
    """The most likely label, its probability, and the probability of every label. For a multi-label
    model, `labels` holds every label above its threshold (`label` is then those names joined by ",")."""

    label: str
    score: float
    probs: dict[str, float]
    labels: list[str] | None = None

    def top_k(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]


class Head:
    """The label set and how logits become probabilities, losses, scores and predictions."""

    multi_label = False

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.index = {name: i for i, name in enumerate(self.labels)}

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
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
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
        raise NotImplementedError


class SingleLabel(Head):
    def targets(self, split: Split) -> torch.Tensor:
        """[N] class ids."""
        self.check_known(split)
        return torch.tensor([self.index[row[0]] for row in split.labels], dtype=torch.int64)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, target, weight=None if weight is None else weight.to(logits.device))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=1)

    def metrics(self, probs: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        return classification_metrics(target.tolist(), probs.argmax(dim=1).tolist(), self.labels)

    def predictions(self, probs: torch.Tensor) -> list[Prediction]:
        out = []
        for row in probs.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            out.append(Prediction(self.labels[best], row[best], dict(zip(self.labels, row, strict=True))))
        return out


class MultiLabel(Head):
    multi_label = True

    def __init__(self, labels: Sequence[str], decision: Decision | None = None) -> None:
        super().__init__(labels)
        self.decision = decision or Decision((0.5,) * len(self.labels), at_least_one=False)

    def targets(self, split: Split) -> torch.Tensor:
        """[N, C] multi-hot floats."""
        self.check_known(split)
        out = torch.zeros(len(split.labels), len(self.labels))
        for i, row in enumerate(split.labels):
            out[i, [self.index[name] for name in row]] = 1.0
        return out

    def loss(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        pos_weight = None if weight is None else weight.to(logits.device)
        return nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float())

    def metrics(self, probs: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        metrics = multilabel_metrics(target, self.decision.apply(probs), self.labels)
        return {**metrics, "decision": self.decision.to_dict(self.labels)}

    def fit_decision(self, probs: torch.Tensor, target: torch.Tensor, metric: str, per_label: bool) -> None:
        self.decision = tune_decision(probs, target, self.labels, metric, per_label, self.decision.at_least_one)

    def with_threshold(self, threshold: float | None) -> Head:
        if threshold is None:
            return self
        return MultiLabel(self.labels, Decision((threshold,) * len(self.labels), self.decision.at_least_one))

    def decision_section(self) -> dict[str, Any]:
        return self.decision.to_dict(self.labels)

    def predictions(self, probs: torch.Tensor) -> list[Prediction]:
        chosen = self.decision.apply(probs).tolist()
        out = []
        for row, on in zip(probs.tolist(), chosen, strict=True):
            picked = sorted((c for c, yes in enumerate(on) if yes), key=lambda c: -row[c])
            best = max(range(len(row)), key=row.__getitem__)
            names = [self.labels[c] for c in picked]
            out.append(Prediction(",".join(names), row[best], dict(zip(self.labels, row, strict=True)), names))
        return out


def make_head(labels: Sequence[str], multi_label: bool, decision: Decision | None = None) -> Head:
    return MultiLabel(labels, decision) if multi_label else SingleLabel(labels)
