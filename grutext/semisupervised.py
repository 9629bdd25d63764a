"""`grutext train DATA --unlabeled TEXTS`: few labels and many texts, in one command.

  1. A language model is pretrained on the unlabelled texts together with the training texts (never a validation
     or test split of their own), at most --pretrain-minutes (grutext.pretraining).
  2. The classifier starts from its tokenizer, word table and encoder (grutext.warmstart): round 0.
  3. Self-training, --self-training rounds: the last round's classifier labels the unlabelled texts, the most
     confident --pseudo-share of them (as many of each class; a share per round) join the training split, and a
     classifier is trained again from the language model. Validation is the same in every round (carved before
     the extra rows are added); the last round is kept unless an earlier one is clearly better on it (kept_round).

Each stage lives in a folder beside the output (`.NAME.unlabeled/`) until the end, so that --resume continues
the stage that was interrupted; the kept round becomes the output, whose config.json records the language model
(`init_from`) and the rounds (`self_training`), and the folder is removed. grutext.training hands its recipe in
(`train_from`), so the two modules do not import each other.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from grutext.artifacts import CONFIG_FILE, METRICS_FILE, TRAINER_STATE_DIR, read_json
from grutext.checkpoint import STATE_JSON, check_output_dir, write_atomically
from grutext.config import ModelConfig, PretrainConfig, TokenizerConfig, TrainConfig
from grutext.corpus import read_corpus, read_texts
from grutext.data import load_labelled, training_splits
from grutext.errors import ConfigError, DataError, UsageError
from grutext.events import Event, RoundKept, StageStarted, TrainResult, silent
from grutext.settings import DataSpec
from grutext.warmstart import Start, open_start

TrainFrom = Callable[..., TrainResult]  # grutext.training.train_from


def stage_dir(output: Path) -> Path:
    """Where an --unlabeled run keeps its stages until the classifier is saved."""
    return output.parent / f".{output.name}.unlabeled"


def pretrain_settings(cfg: TrainConfig) -> PretrainConfig:
    """The language model's settings for an --unlabeled run: the run's seed, device, backend and vectors, at
    most --pretrain-epochs passes and --pretrain-minutes of training."""
    return PretrainConfig(
        epochs=cfg.resolved_pretrain_epochs(),
        seed=cfg.seed,
        device=cfg.device,
        backend=cfg.backend,
        max_minutes=cfg.pretrain_minutes,
        vectors=cfg.vectors,
        vectors_std=cfg.vectors_std,
    )


def _finished(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and not _interrupted(folder)


def _interrupted(folder: Path) -> bool:
    return (folder / TRAINER_STATE_DIR / STATE_JSON).is_file()


def train_with_unlabeled(
    spec: DataSpec,
    tok_cfg: TokenizerConfig,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    output: Path,
    train_from: TrainFrom,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> TrainResult:
    """Pretrain, train, self-train (each stage resumed or reused where --resume finds it done), keep the best
    round in `output`."""
    if cfg.streaming:
        raise UsageError("--unlabeled reads the training texts into memory to pretrain on them; drop --streaming")
    stage = stage_dir(output)
    if resume and not stage.is_dir():
        raise ConfigError(f"{output} holds no interrupted --unlabeled run to resume; train without --resume")
    if not resume:
        check_output_dir(output, overwrite)
        shutil.rmtree(stage, ignore_errors=True)
    begin, summary = _language_model(spec, tok_cfg, model_cfg, cfg, stage / "language-model", on_event)
    multi_label = False
    pool: list[str] | None = None
    rounds: list[dict[str, Any]] = []
    extra: list[tuple[str, list[str]]] = []
    emit = on_event or silent
    for number in range(cfg.self_training + 1):
        folder = stage / f"round-{number}"
        emit(StageStarted(f"round {number} of {cfg.self_training}", _finished(folder), len(extra)))
        if not _finished(folder):
            train_from(
                spec, tok_cfg, model_cfg, cfg, folder, begin, overwrite=True, resume=_interrupted(folder),
                on_event=on_event, pretrained=summary, extra=extra,
            )  # fmt: skip
        config = read_json(folder / CONFIG_FILE, "config")
        metrics = read_json(folder / METRICS_FILE, "metrics file")
        metric = config["train"]["resolved_early_stop_metric"]
        score = metrics["validation"].get(metric, metrics["validation"].get("accuracy"))
        n = metrics["validation"].get("n", 0)
        rounds.append({"round": number, "pseudo_labelled": len(extra), "validation": score, "validation_n": n})
        if "test" in metrics:  # reported beside each round, never used to choose one
            rounds[-1]["test"] = metrics["test"].get(metric, metrics["test"].get("accuracy"))
        multi_label = bool(config.get("shape", {}).get("multi_label"))
        if number == cfg.self_training or multi_label:  # self-training labels one class a text
            break
        if pool is None:
            labelled = set(_training_texts(spec, cfg))
            try:
                texts = read_texts(cfg.unlabeled or [], spec.text_column)[0]
            except DataError:  # every unlabelled record was empty: the training texts were pretrained on alone
                texts = []
            pool = [t for t in texts if t not in labelled]
        extra = pseudo_labels(folder, pool, cfg.round_share(number + 1)) if pool else []
        if not extra:  # nothing to add (the unlabelled texts are the training texts): no further round
            break
    kept = kept_round(rounds)
    shares = [cfg.round_share(r["round"]) for r in rounds[1:]]
    record = {"rounds": rounds, "kept": kept["round"], "pseudo_share": shares}
    path = _keep(stage / f"round-{kept['round']}", output, record, overwrite or resume)
    shutil.rmtree(stage, ignore_errors=True)
    emit(RoundKept(path, kept["round"], rounds))
    metrics = read_json(path / METRICS_FILE, "metrics file")
    return TrainResult(path, metrics)


def kept_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The last round, unless an earlier one beats it on validation by more than two standard errors of the
    difference. Rounds improve on average (docs/experiments.md: on development texts, keeping the last beat
    keeping the best of 50 validation texts by 0.75 points), while on a few dozen texts a lead of a few points is
    noise: two standard errors there are about 13 points, on 2,000 texts about 2."""
    last = rounds[-1]
    best = max(rounds, key=lambda r: (r["validation"], r["round"]))
    n = int(min(r.get("validation_n", 0) for r in (best, last)))
    if n <= 0:
        return last

    def variance(score: float) -> float:
        p = min(max(float(score), 0.0), 1.0)
        return p * (1 - p) / n

    margin = 2 * math.sqrt(variance(best["validation"]) + variance(last["validation"]))
    return best if best["validation"] - last["validation"] > margin else last


def _training_texts(spec: DataSpec, cfg: TrainConfig) -> list[str]:
    """The texts of the labelled data's training file: its train split, and the validation carved from it (a
    validation split of its own is never pretrained on)."""
    labelled = training_splits(load_labelled(spec.source, **spec.read_options()), cfg.val_fraction, cfg.seed)
    texts = labelled.splits["train"].texts
    if labelled.validation_from != "validation split":
        texts = [*texts, *labelled.splits["validation"].texts]
    return texts


def _language_model(
    spec: DataSpec,
    tok_cfg: TokenizerConfig,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    folder: Path,
    on_event: Callable[[Event], None] | None,
) -> tuple[Start, dict[str, Any]]:
    """The language model of the unlabelled and training texts (pretrained, resumed, or reused when done), and
    its summary for config.json."""
    from grutext.pretraining import pretrain

    (on_event or silent)(StageStarted("language model", _finished(folder)))
    if not _finished(folder):
        settings = pretrain_settings(cfg)
        texts = _training_texts(spec, cfg)
        corpus = read_corpus(cfg.unlabeled or [], spec.text_column, settings.held_out, settings.max_held_out, texts)
        pretrain(
            [*(cfg.unlabeled or []), spec.source], tok_cfg, model_cfg, settings, folder, overwrite=True,
            resume=_interrupted(folder), on_event=on_event, corpus=corpus,
        )  # fmt: skip
    begin = open_start(str(folder))
    metrics = read_json(folder / METRICS_FILE, "metrics file")
    metrics.pop("history", None)
    return begin, {**begin.summary(), "path": None, "metrics": metrics}


def pseudo_labels(model_dir: Path, pool: list[str], share: float) -> list[tuple[str, list[str]]]:
    """The texts of `pool` the classifier in `model_dir` is surest of: for each class, the most confident of the
    texts it gives that class, `share` of the pool in all and as many of each class (the rarest class decides)."""
    from grutext.engine import load_engine

    engine = load_engine(model_dir)
    probs = np.asarray(engine.predict_proba(pool))
    guess, confidence = probs.argmax(axis=1), probs.max(axis=1)
    labels = list(engine.labels)
    per_class = int(share * len(pool) / len(labels))
    ranked = [
        np.flatnonzero(guess == c)[np.argsort(-confidence[guess == c], kind="stable")] for c in range(len(labels))
    ]
    take = min([per_class, *(len(r) for r in ranked)])
    return [(pool[i], [labels[c]]) for c, rows in enumerate(ranked) for i in rows[:take]]


def _keep(folder: Path, output: Path, record: dict[str, Any], overwrite: bool) -> Path:
    """The kept round's checkpoint, copied into `output` atomically, with the rounds in its config.json."""
    config = read_json(folder / CONFIG_FILE, "config")
    config["self_training"] = record

    def fill(tmp: Path) -> None:
        for item in folder.iterdir():
            if item.is_file() and item.name != CONFIG_FILE:
                shutil.copy2(item, tmp / item.name)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    return write_atomically(output, overwrite, fill)
