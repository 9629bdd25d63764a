"""Score a checkpoint on labelled data: the head turns logits into the task's metrics (see grutext.metrics)."""

from __future__ import annotations

from typing import Any

from grutext.batching import infer
from grutext.checkpoint import Checkpoint
from grutext.config import INFER_BATCH_SIZE
from grutext.data import Split
from grutext.tokenizer import encode


def evaluate(
    checkpoint: Checkpoint, split: Split, batch_size: int = INFER_BATCH_SIZE, threshold: float | None = None
) -> dict[str, Any]:
    """Run the model over a split and score it. `threshold` overrides a multi-label model's tuned thresholds."""
    head = checkpoint.head.with_threshold(threshold)
    target = head.targets(split)  # before the model runs: an unknown label is an error
    ids = encode(checkpoint.tokenizer, split.texts, checkpoint.tokenizer_config)
    device = next(checkpoint.model.parameters()).device
    logits = infer(checkpoint.model, ids, device, batch_size)
    return head.metrics(head.probabilities(logits), target)
