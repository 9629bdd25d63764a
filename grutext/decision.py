"""How a multi-label model's sigmoid probabilities become label sets. Stored in config.json ("decision").
numpy only, so the torch-free ONNX engine decides exactly as the torch one does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Decision:
    """How sigmoid probabilities become a label set: one threshold per label (all equal for a global one),
    and whether every text gets at least its most likely label (when every training text had a label)."""

    thresholds: tuple[float, ...]
    at_least_one: bool
    per_label: bool = False  # tuned label by label (stored as a map even where values coincide)

    def apply(self, probs: Any) -> npt.NDArray[np.bool_]:
        """probs [N, C] (an array, or a CPU tensor) -> the chosen labels, a boolean [N, C] array."""
        p = np.asarray(probs)
        chosen = p >= np.asarray(self.thresholds, dtype=p.dtype)
        if self.at_least_one and p.size:
            empty = ~chosen.any(axis=1)  # only rows where nothing passed get their most likely label
            chosen[empty, p[empty].argmax(axis=1)] = True
        return chosen

    def with_threshold(self, threshold: float | None) -> Decision:
        """One threshold for every label instead of the tuned ones (--threshold); None keeps these."""
        if threshold is None:
            return self
        return Decision((threshold,) * len(self.thresholds), self.at_least_one)

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
