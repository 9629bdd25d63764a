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
    second carve on), so a search shows progress long before a trial ends.

    Trial 0 is the defaults (with the `fixed` settings): the search keeps something else only when it beats
    them on validation. A trial's score is the mean validation score over `carves` carves of train into train
    and validation (other seeds); by default 3 where the data is small (under SMALL_DATA training rows and no
    validation split of its own), where one carve's best-of-N is mostly luck, else 1. The kept model is the
    best trial's first carve. The timeout is the search's: a trial still running when it passes stops at its
    next step, unkept, and the best finished trial is the result."""
    from grutext.checkpoint import check_output_dir
    from grutext.settings import configs_from_options

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
    deadline = None if timeout is None else time.perf_counter() + timeout
    work = Path(tempfile.mkdtemp(prefix=".tune-", dir=output.absolute().parent))
    search = _Search(data, fixed, space, seed, carves, deadline, work, _study(seed), on_trial, on_epoch)
    try:
        search.study.optimize(search.objective, n_trials=trials, timeout=timeout, catch=())
        if not search.best:
            if search.stopped:
                raise search.stopped[0]
            raise ConfigError(
                "no trial finished (all were pruned or failed, or the time ran out before the first, at the "
                "defaults, ended); give tune more --timeout"
            )
        _keep(Path(search.best["folder"]), search.best, search.records, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best, records = search.best, search.records
    if search.stopped:
        raise Interrupted(
            f"{signal.Signals(search.stopped[0].signum).name}: the search stopped after {len(records)} trial(s); "
            f"kept the best so far (validation {best['score']:.4f}) in {output}",
            search.stopped[0].signum,
        )
    return TuneResult(output, best["score"], best["params"], records)


@dataclass
class _Search:
    """One search's trials: each a training run (on `carves` carves), its record, and the best so far."""

    data: str
    fixed: dict[str, Any]
    space: dict[str, tuple[str, Any]]
    seed: int
    carves: int
    deadline: float | None
    work: Path
    study: Any
    on_trial: Callable[[TrialDone], None] | None
    on_epoch: Callable[..., None] | None
    records: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    stopped: list[Interrupted] = field(default_factory=list)  # a signal during a trial ends the search

    def objective(self, trial: Any) -> float:
        import optuna

        from grutext.settings import configs_from_options
        from grutext.training import train

        defaults = trial.number == 0
        params = {} if defaults else {name: _suggest(trial, name, *how) for name, how in self.space.items()}
        folder = self.work / f"trial-{trial.number}"
        start = time.perf_counter()
        record: dict[str, Any] = {"trial": trial.number, "params": params}
        options = {"seed": self.seed, **self.fixed, **params}
        try:
            result = train(*configs_from_options(self.data, options), folder, on_event=self._first(trial, record))
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            metric = config["train"]["resolved_early_stop_metric"]
            scores = [_score(result.metrics["validation"], metric)]
            for k in range(1, self.carves):  # the same settings on other carves: less luck in the score
                again = configs_from_options(self.data, {**options, "seed": self.seed + k})
                extra = train(*again, folder.with_name(f"{folder.name}-carve-{k}"), on_event=self._later(trial, k))
                scores.append(_score(extra.metrics["validation"], metric))
                shutil.rmtree(extra.path, ignore_errors=True)
        except (_Pruned, _OutOfTime, TrainingError, Interrupted) as exc:
            self._failed(exc, folder, record, start)
            raise optuna.TrialPruned() from None
        if defaults:  # the settings the defaults resolved to, in the search's terms
            settled = {**config["train"], **config["model"]}
            params = {name: config["train"].get(f"resolved_{name}", settled.get(name)) for name in self.space}
            record.update(params=params, defaults=True)
        score = sum(scores) / len(scores)
        if self.carves > 1:
            record["scores"] = scores
        record.update(state="complete", score=score, seconds=round(time.perf_counter() - start, 1))
        self.records.append(record)
        if not self.best or score > self.best["score"]:
            if self.best:
                shutil.rmtree(self.best["folder"], ignore_errors=True)
            self.best.update(score=score, folder=folder, params=params)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        _report(self.on_trial, record, self.study, score)
        return score

    def _out_of_time(self, event: Any) -> None:
        from grutext.events import StepDone

        if isinstance(event, StepDone) and self.deadline is not None and time.perf_counter() > self.deadline:
            raise _OutOfTime

    def _first(self, trial: Any, record: dict[str, Any]) -> Callable[[Any], None]:
        """The first carve's events: the pruner hears every epoch's validation score."""
        from grutext.events import EpochDone

        def on_event(event: Any) -> None:
            self._out_of_time(event)
            if isinstance(event, EpochDone):
                trial.report(event.val_score, event.epoch)
                record["epochs"] = event.epoch
                if self.on_epoch is not None:
                    self.on_epoch(trial.number, event)
                if trial.should_prune():
                    raise _Pruned

        return on_event

    def _later(self, trial: Any, k: int) -> Callable[[Any], None]:
        """A later carve's events: no pruning (the first carve decided that), progress only."""
        from grutext.events import EpochDone

        def on_event(event: Any) -> None:
            self._out_of_time(event)
            if isinstance(event, EpochDone) and self.on_epoch is not None:
                self.on_epoch(trial.number, event, carve=k + 1)

        return on_event

    def _failed(self, exc: Exception, folder: Path, record: dict[str, Any], start: float) -> None:
        """A trial that did not finish: its folders go, its record says why; a signal or the clock ends the
        search, keeping what the finished trials found."""
        for leftover in [folder, *self.work.glob(f"{folder.name}-carve-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        kinds = {_Pruned: "pruned", _OutOfTime: "out of time", TrainingError: "failed", Interrupted: "interrupted"}
        record.update(state=kinds[type(exc)], seconds=round(time.perf_counter() - start, 1))
        if isinstance(exc, TrainingError):
            record["error"] = str(exc)
        self.records.append(record)
        _report(self.on_trial, record, self.study)
        if isinstance(exc, Interrupted):
            self.stopped.append(exc)
        if isinstance(exc, (Interrupted, _OutOfTime)):
            self.study.stop()


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
