"""grutext: a command-line text classifier built on a GRU, and its Python API.

    import grutext
    model = grutext.train("data/bbc", "models/bbc", epochs=5)   # any `grutext train` option, as a keyword
    model = grutext.load("models/bbc")
    model.predict(["Shares rose sharply after the results."])  # -> [Prediction(label=..., score=..., probs=...)]
    model.evaluate("data/bbc")                                 # -> the metrics `grutext evaluate --json` prints

Importing this package is cheap: torch is imported only when a model is trained or loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from grutext.api import Classifier
    from grutext.auditing import AuditResult


def load(path: str | Path, device: str = "cpu", threshold: float | None = None) -> Classifier:
    """Load a checkpoint directory for prediction and evaluation."""
    from grutext.api import load_model

    return load_model(path, device, threshold=threshold)


def train(data: str | Path, output: str | Path, **options: Any) -> Classifier:
    """Train on `data` (any DATASET form of `grutext train`) into `output`; options as keywords, named like
    the command line's flags (`epochs=5`, `embed_dim=64`, `overwrite=True`)."""
    from grutext.api import train_model

    return train_model(data, output, **options)


def pretrain(texts: Sequence[str | Path], output: str | Path, **options: Any) -> dict[str, Any]:
    """Pretrain a language model on unlabelled `texts` (files, folders or hub ids, as `grutext pretrain` reads
    them) into `output`, for `train(..., init_from=output)`; options as keywords named like its flags
    (`epochs=5`, `max_minutes=20`). Returns its metrics (held-out perplexity, history)."""
    from grutext.api import pretrain_model

    return pretrain_model(texts, output, **options)


def audit(data: str | Path, folds: int = 5, split: str | None = None, **options: Any) -> AuditResult:
    """Rows of `data` (any DATASET form) whose label is likely wrong, as `grutext audit` finds them: `folds`
    models at the settings `options` names (as train's flags), then confident learning. `.suspects` holds
    them, the most suspect first."""
    from grutext.auditing import audit as run

    return run(str(data), options, folds=folds, split=split)


__all__ = ["__version__", "audit", "load", "pretrain", "train"]
