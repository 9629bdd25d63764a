"""`grutext tune`: a time-boxed hyperparameter search on the user's own data, scored on validation only.

Optuna's TPE sampler (seeded) proposes settings; each trial is a normal training run, and its validation score
after every epoch goes to a median pruner, which stops trials that trail the others at the same epoch. The
best trial's checkpoint becomes DIR, with tuning.json beside its other files: every trial's settings, score,
epochs, time and fate. The test split is scored for the kept model only, as in any training run, and never
chooses anything.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grutext.errors import ConfigError, Interrupted, TrainingError

TUNING_FILE = "tuning.json"
# On mr and mpqa (9,600 and 9,500 training rows, about 1,000 for validation) the tuned model scored below the
# defaults on test: the best of N trials on one small carve is partly luck. Under this many training rows each
# trial is scored on SMALL_CARVES carves.
SMALL_DATA = 20_000
SMALL_CARVES = 3

# The search space: what the defaults were chosen among (docs/experiments.md), a little wider.
SPACE: dict[str, tuple[str, Any]] = {
    "lr": ("log", (1e-3, 1.5e-2)),
    "dropout": ("float", (0.1, 0.6)),
    "hidden_size": ("choice", (64, 128, 256)),
    "embed_dim": ("choice", (64, 128, 256)),
    "pooling": ("choice", ("max", "mean", "maxmean")),
    "batch_size": ("choice", (16, 32, 64)),
    "word_dropout": ("float", (0.0, 0.3)),
    "weight_decay": ("log", (1e-4, 1e-1)),
    "layers": ("choice", (1, 2)),
    "bigram_buckets": ("choice", (0, 50_000)),
}


@dataclass
class TrialDone:
    """One finished trial, for the progress display."""

    number: int
    state: str  # complete, pruned, failed (the loss diverged), interrupted
    score: float | None
    best: float | None
    params: dict[str, Any]
    seconds: float
    epochs: int


@dataclass
class TuneResult:
    path: Path
    best_score: float
    best_params: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)


class _Pruned(Exception):
    pass


class _OutOfTime(Exception):
    """The search's time is up while a trial runs: it stops there and is not kept (it never finished)."""


def tune(
    data: str,
    output: Path,
    *,
    trials: int | None = 20,
    timeout: float | None = 600.0,
    seed: int = 13,
    fixed: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    on_trial: Callable[[TrialDone], None] | None = None,
    on_epoch: Callable[..., None] | None = None,
    carves: int | None = None,
) -> TuneResult:
    """Search SPACE (minus the `fixed` settings) for the best validation score, within `trials` trials and
    `timeout` seconds, and write the best model to `output`. `on_trial` hears of every finished trial, and
    `on_epoch` of every epoch a trial ends (its number and grutext.events' EpochDone; `carve=k` from the
    second carve on), so a search shows
    progress long before a trial ends.

    Trial 0 is the defaults (with the `fixed` settings): the search keeps something else only when it beats
    them on validation. A trial's score is the mean validation score over `carves` carves of train into train
    and validation (other seeds); by default 3 where the data is small (under SMALL_DATA training rows and no
    validation split of its own), where one carve's best-of-N is mostly luck, else 1. The kept model is the
    best trial's first carve. The timeout is the search's: a trial still running when it passes stops at its next
    step, unkept, and the best finished trial is the result."""
    import optuna

    from grutext.checkpoint import check_output_dir
    from grutext.events import EpochDone, StepDone
    from grutext.settings import configs_from_options
    from grutext.training import train

    fixed = dict(fixed or {})
    check_output_dir(output, overwrite)
    if "vectors" in fixed and "embed_dim" not in fixed:
        fixed["embed_dim"] = None  # the vectors' dimension
    spec, _, _, base_cfg = configs_from_options(data, fixed)  # a typo fails now, not after the first trial
    if carves is None:
        carves = _carves_for(spec, base_cfg)
    if isinstance(carves, bool) or not isinstance(carves, int) or carves < 1:
        raise ConfigError(f"carves must be a positive integer, got {carves!r}")
    space = {k: v for k, v in SPACE.items() if k not in fixed}
    if not space:
        raise ConfigError("every tuned setting is fixed; leave at least one of " + ", ".join(SPACE))
    study = _study(seed)
    work = Path(tempfile.mkdtemp(prefix=".tune-", dir=output.absolute().parent))
    records: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    stopped: list[Interrupted] = []  # a signal during a trial ends the search

    deadline = None if timeout is None else time.perf_counter() + timeout

    def objective(trial: optuna.Trial) -> float:
        defaults = trial.number == 0
        params = {} if defaults else {name: _suggest(trial, name, *how) for name, how in space.items()}
        folder = work / f"trial-{trial.number}"
        start = time.perf_counter()
        record: dict[str, Any] = {"trial": trial.number, "params": params}

        def on_event(event: Any) -> None:
            if isinstance(event, StepDone) and deadline is not None and time.perf_counter() > deadline:
                raise _OutOfTime
            if isinstance(event, EpochDone):
                trial.report(event.val_score, event.epoch)
                record["epochs"] = event.epoch
                if on_epoch is not None:
                    on_epoch(trial.number, event)
                if trial.should_prune():
                    raise _Pruned

        def later_carve(k: int) -> Callable[[Any], None]:
            def on_event(event: Any) -> None:  # no pruning: the first carve decided that
                if isinstance(event, StepDone) and deadline is not None and time.perf_counter() > deadline:
                    raise _OutOfTime
                if isinstance(event, EpochDone) and on_epoch is not None:
                    on_epoch(trial.number, event, carve=k + 1)

            return on_event

        options = {"seed": seed, **fixed, **params}
        try:
            spec, tok_cfg, model_cfg, cfg = configs_from_options(data, options)
            result = train(spec, tok_cfg, model_cfg, cfg, folder, on_event=on_event)
        except (_Pruned, _OutOfTime, TrainingError, Interrupted) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            kinds = {_Pruned: "pruned", _OutOfTime: "out of time", TrainingError: "failed", Interrupted: "interrupted"}
            state = kinds[type(exc)]
            record.update(state=state, seconds=round(time.perf_counter() - start, 1))
            if isinstance(exc, TrainingError):
                record["error"] = str(exc)
            records.append(record)
            _report(on_trial, record, study)
            if isinstance(exc, Interrupted):  # keep what the finished trials found
                stopped.append(exc)
            if isinstance(exc, (Interrupted, _OutOfTime)):
                study.stop()
            raise optuna.TrialPruned() from None
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        chosen_by = config["train"]
        if defaults:  # the settings the defaults resolved to, in the search's terms
            settled = {**config["train"], **config["model"]}
            params = {name: config["train"].get(f"resolved_{name}", settled.get(name)) for name in space}
            record.update(params=params, defaults=True)
        metric = chosen_by["resolved_early_stop_metric"]
        scores = [_score(result.metrics["validation"], metric)]
        try:  # the same settings on other carves of train into train and validation: less luck in the score
            for k in range(1, carves):
                again = configs_from_options(data, {**options, "seed": seed + k})
                extra = train(*again, folder.with_name(f"{folder.name}-carve-{k}"), on_event=later_carve(k))
                scores.append(_score(extra.metrics["validation"], metric))
                shutil.rmtree(extra.path, ignore_errors=True)
        except (_OutOfTime, TrainingError, Interrupted) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            for leftover in work.glob(f"{folder.name}-carve-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            kinds = {_OutOfTime: "out of time", TrainingError: "failed", Interrupted: "interrupted"}
            record.update(state=kinds[type(exc)], seconds=round(time.perf_counter() - start, 1))
            records.append(record)
            _report(on_trial, record, study)
            if isinstance(exc, Interrupted):
                stopped.append(exc)
            if isinstance(exc, (Interrupted, _OutOfTime)):
                study.stop()
            raise optuna.TrialPruned() from None
        score = sum(scores) / len(scores)
        if carves > 1:
            record["scores"] = scores
        record.update(state="complete", score=score, seconds=round(time.perf_counter() - start, 1))
        records.append(record)
        if not best or score > best["score"]:
            if best:
                shutil.rmtree(best["folder"], ignore_errors=True)
            best.update(score=score, folder=folder, params=params)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        _report(on_trial, record, study, score)
        return score

    try:
        study.optimize(objective, n_trials=trials, timeout=timeout, catch=())
        if not best:
            if stopped:
                raise stopped[0]
            raise ConfigError(
                "no trial finished (all were pruned or failed, or the time ran out before the first, at the "
                "defaults, ended); give tune more --timeout"
            )
        _keep(Path(best["folder"]), best, records, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if stopped:
        raise Interrupted(
            f"{signal.Signals(stopped[0].signum).name}: the search stopped after {len(records)} trial(s); kept the "
            f"best so far (validation {best['score']:.4f}) in {output}",
            stopped[0].signum,
        )
    return TuneResult(output, best["score"], best["params"], records)


def _carves_for(spec: Any, cfg: Any) -> int:
    """3 carves for small data without a validation split of its own, else 1 (see tune)."""
    if cfg.streaming:
        return 1
    from grutext.data import load_labelled

    loaded = load_labelled(spec.source, **spec.read_options())
    small = len(loaded.splits.get("train", next(iter(loaded.splits.values()))).texts) < SMALL_DATA
    return SMALL_CARVES if small and "validation" not in loaded.splits else 1


def _study(seed: int) -> Any:
    """Optuna's TPE sampler, seeded, with a median pruner that waits for three trials and one epoch."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )


def _keep(folder: Path, best: dict[str, Any], records: list[dict[str, Any]], output: Path) -> None:
    """The best trial's checkpoint, with every trial's record beside its files, becomes `output`."""
    summary = {"best": {"score": best["score"], "params": best["params"]}, "trials": records}
    (folder / TUNING_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if output.exists():
        shutil.rmtree(output)
    folder.rename(output)


def _score(metrics: dict[str, Any], metric: str) -> float:
    """The validation score that picked the epoch (micro-F1 is accuracy for single-label data)."""
    return float(metrics["accuracy"] if metric == "micro_f1" and "accuracy" in metrics else metrics[metric])


def _suggest(trial: Any, name: str, kind: str, bounds: Any) -> Any:
    if kind == "log":
        return trial.suggest_float(name, *bounds, log=True)
    if kind == "float":
        return trial.suggest_float(name, *bounds)
    return trial.suggest_categorical(name, list(bounds))


def _report(
    on_trial: Callable[[TrialDone], None] | None, record: dict[str, Any], study: Any, score: float | None = None
) -> None:
    if on_trial is None:
        return
    finished = [t for t in study.trials if t.value is not None]
    best = max([t.value for t in finished] + ([score] if score is not None else []), default=None)
    on_trial(
        TrialDone(
            record["trial"], record["state"], score, best, record["params"], record["seconds"], record.get("epochs", 0)
        )
    )
