"""Score a model on labelled data, whichever engine runs it: the head turns its probabilities into the task's
metrics (see grutext.metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from grutext.data import Split
from grutext.decision import Decision
from grutext.head import make_head


class Engine(Protocol):
    """What evaluate needs of a loaded model (grutext.predict.Predictor or grutext.onnx_engine.OnnxPredictor)."""

    @property
    def labels(self) -> list[str]: ...

    @property
    def multi_label(self) -> bool: ...

    decision: Decision | None

    def predict_proba(self, texts: Sequence[str]) -> Any: ...


def evaluate(engine: Engine, split: Split) -> dict[str, Any]:
    """Run the model over a split and score it, with the engine's decision (thresholds) for multi-label."""
    head = make_head(engine.labels, engine.multi_label, engine.decision)
    target = head.targets(split)  # before the model runs: an unknown label is an error
    probs = torch.as_tensor(np.asarray(engine.predict_proba(split.texts)))
    return head.metrics(probs, target)
