"""How a multi-label model's sigmoid probabilities become label sets. Stored in config.json ("decision")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Decision:
    """How sigmoid probabilities become a label set: one threshold per label (all equal for a global one),
    and whether every text gets at least its most likely label (when every training text had a label)."""

    thresholds: tuple[float, ...]
    at_least_one: bool
    per_label: bool = False  # tuned label by label (stored as a map even where values coincide)

    def apply(self, probs: torch.Tensor) -> torch.Tensor:
        chosen = probs >= torch.tensor(self.thresholds, dtype=probs.dtype)
        if self.at_least_one and probs.numel():
            empty = ~chosen.any(dim=1)  # only rows where nothing passed get their most likely label
            chosen[empty, probs[empty].argmax(dim=1)] = True
        return chosen

    def to_dict(self, labels: Sequence[str]) -> dict[str, Any]:
        return {
            "threshold": None if self.per_label else self.thresholds[0],
            "per_label": dict(zip(labels, self.thresholds, strict=True)) if self.per_label else None,
            "at_least_one": self.at_least_one,
        }

    @staticmethod
    def from_dict(data: dict[str, Any], labels: Sequence[str]) -> Decision:
        per_label = bool(data.get("per_label"))
        if per_label:
            thresholds = tuple(float(data["per_label"][label]) for label in labels)
        else:
            thresholds = (float(data["threshold"]),) * len(labels)
        if not all(0.0 < t < 1.0 for t in thresholds):
            raise ValueError("thresholds must lie strictly between 0 and 1")
        return Decision(thresholds, bool(data.get("at_least_one", False)), per_label)
