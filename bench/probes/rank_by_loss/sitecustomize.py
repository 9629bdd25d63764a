"""Probe-only: the classifier keeps the epoch of the lowest validation loss instead of the best accuracy.

With this folder first on PYTHONPATH and GRUTEXT_RANK_BY_LOSS=1 set, every classifier run (each self-training round
of --unlabeled included) ranks its epochs by validation loss, accuracy only breaking a tie. On 50 validation texts
accuracy moves in steps of 2 points, and a lucky early epoch can be kept (docs/experiments.md, chnsenticorp's
draw 1):

    PYTHONPATH=bench/probes/rank_by_loss:. GRUTEXT_RANK_BY_LOSS=1 python bench/few_labels.py ... --label L
"""

import dataclasses
import os
from typing import Any

if os.environ.get("GRUTEXT_RANK_BY_LOSS"):
    from grutext.task import ClassifierObjective

    _validate = ClassifierObjective.validate

    def _by_loss(self: Any) -> Any:
        val = _validate(self)
        return dataclasses.replace(val, rank=[-val.loss, val.score])

    ClassifierObjective.validate = _by_loss  # type: ignore[method-assign]
