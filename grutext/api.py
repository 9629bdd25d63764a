"""The Python API, mirroring the command line as fastText's train_supervised / load_model / predict / test do:

import grutext
model = grutext.train("data/bbc", "models/bbc", epochs=5)     # any `grutext train` option, as a keyword
model = grutext.load("models/bbc")
model.predict(["Shares rose after the results."])           # [Prediction(label, score, probs)]
model.evaluate("data/bbc")                                   # the metrics `grutext evaluate --json` prints
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grutext.backend import resolve_device
from grutext.checkpoint import load
from grutext.config import INFER_BATCH_SIZE
from grutext.data import load_labelled, pick_split
from grutext.evaluate import evaluate
from grutext.predict import Predictor
from grutext.prediction import check_abstain


class Classifier(Predictor):
    """A trained model: `predict` texts, `predict_proba`, `stream` an iterable, `evaluate` labelled data."""

    def evaluate(
        self,
        data: str | Path,
        split: str | None = None,
        *,
        threshold: float | None = None,
        min_score: float | None = None,
        **data_options: Any,
    ) -> dict[str, Any]:
        """Score on labelled data (any DATASET form `grutext evaluate` reads; `text_column=...` and the
        other data options as keywords). The split is `split`, else test, else the only one. `min_score` adds
        its row to the metrics' "abstaining" (coverage and accuracy when answering only above it)."""
        check_abstain(min_score, "", self.multi_label)
        name, chosen = pick_split(load_labelled(str(data), **data_options), split)
        model = self if threshold is None else Classifier(self.checkpoint, self.batch_size, threshold)
        return {"split": name, **evaluate(model, chosen, min_score)}


def load_model(
    path: str | Path, device: str = "cpu", batch_size: int = INFER_BATCH_SIZE, threshold: float | None = None
) -> Classifier:
    """Load a checkpoint directory. `threshold` overrides a multi-label model's tuned thresholds."""
    return Classifier(load(path, resolve_device(device)), batch_size, threshold)


def train_model(
    data: str | Path,
    output: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_event: Callable[[Any], None] | None = None,
    **options: Any,
) -> Classifier:
    """Train on `data` and write the checkpoint to `output`, like `grutext train DATA --output OUTPUT`: every
    option as a keyword named like its flag (`epochs=5`, `embed_dim=64`, `tokenizer="bpe"`). `on_event`
    receives the progress events (grutext.events' dataclasses). Returns the trained model, on the CPU."""
    from grutext.settings import configs_from_options
    from grutext.training import train as run

    spec, tok_cfg, model_cfg, cfg = configs_from_options(str(data), options)
    result = run(spec, tok_cfg, model_cfg, cfg, Path(output), overwrite=overwrite, resume=resume, on_event=on_event)
    return load_model(result.path)


def pretrain_model(
    texts: Sequence[str | Path],
    output: str | Path,
    *,
    text_column: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    on_event: Callable[[Any], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`grutext pretrain TEXTS --output OUTPUT`, every option as a keyword named like its flag."""
    from grutext.pretraining import pretrain
    from grutext.settings import pretrain_configs

    if isinstance(texts, (str, Path)):
        texts = [texts]
    tok_cfg, model_cfg, cfg = pretrain_configs(options)
    result = pretrain(
        [str(t) for t in texts], tok_cfg, model_cfg, cfg, Path(output), text_column=text_column,
        overwrite=overwrite, resume=resume, on_event=on_event,
    )  # fmt: skip
    return result.metrics


def predict(model: Classifier, texts: Sequence[str]) -> list[Any]:
    """`model.predict(texts)`, for symmetry with fastText's module-level calls."""
    return model.predict(texts)


__all__ = ["Classifier", "load_model", "predict", "pretrain_model", "train_model"]
