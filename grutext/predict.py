"""The torch engine: a loaded checkpoint's model labels texts (grutext.onnx_engine is the other engine)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from grutext.artifacts import MetaView
from grutext.batching import TokenRows, infer
from grutext.checkpoint import Checkpoint, load
from grutext.config import INFER_BATCH_SIZE
from grutext.prediction import Labeller, Prediction, check_settings, check_texts, format_prediction
from grutext.tokenizer import encode_inputs

__all__ = ["Prediction", "Predictor", "format_prediction"]


class Predictor(MetaView, Labeller):
    """A loaded checkpoint that labels texts (what it is: grutext.artifacts.MetaView)."""

    def __init__(
        self, checkpoint: Checkpoint, batch_size: int = INFER_BATCH_SIZE, threshold: float | None = None
    ) -> None:
        check_settings(batch_size, threshold)
        self.checkpoint = checkpoint
        self.meta = checkpoint.meta
        self.batch_size = batch_size
        self.device = next(checkpoint.model.parameters()).device
        self.head = checkpoint.head.with_threshold(threshold)
        self.decision = self.head.decision  # multi-label: how probabilities become label sets

    @classmethod
    def load(
        cls, path: str | Path, device: str = "cpu", batch_size: int = INFER_BATCH_SIZE, threshold: float | None = None
    ) -> Predictor:
        """Load a checkpoint; `threshold` overrides a multi-label model's tuned thresholds."""
        return cls(load(path, torch.device(device)), batch_size, threshold)

    def predict_proba(self, texts: Sequence[str]) -> torch.Tensor:
        """Probabilities [N, C], rows in input order: softmax, or per-label sigmoid for multi-label."""
        texts = check_texts(texts)
        return self.proba_of_ids(*encode_inputs(self.tokenizer, texts, self.tokenizer_config, self.model_config))

    def proba_of_ids(self, ids: TokenRows, grams: TokenRows | None = None) -> torch.Tensor:
        """Probabilities [N, C] of token-id rows, with their character n-grams for a model that reads them (as
        tokenizer.encode_inputs makes both)."""
        if not ids:
            return torch.empty(0, len(self.labels))
        logits = infer(self.checkpoint.model, ids, self.device, self.batch_size, grams)
        return self.head.probabilities(logits)

    def records(self, probs: torch.Tensor) -> list[Prediction]:
        return self.head.predictions(probs)
