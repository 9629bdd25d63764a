"""grutext: a command-line text classifier built on a GRU.

    import grutext
    clf = grutext.load("models/bbc")
    clf.predict(["Shares rose sharply after the results."])  # -> [Prediction(label=..., score=..., probs=...)]

Importing this package is cheap: torch is imported only when a model is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from grutext.predict import Predictor


def load(path: str, device: str = "cpu") -> Predictor:
    """Load a checkpoint directory for prediction."""
    from grutext.predict import Predictor

    return Predictor.load(path, device=device)


__all__ = ["__version__", "load"]
