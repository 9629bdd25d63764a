"""The one training loop, for every kind of run: a classifier on data in memory or streamed, a language model.

The loop knows batches, a loss and a cadence (nanoGPT's single loop over get_batch; HF Trainer's one inner loop):

  * a `BatchSource` says where this rank's training batches come from and where a resumed run goes on;
  * an `Objective` turns a batch into a loss, scores the model on validation data, and keeps what it needs
    from the best epoch (a multi-label head's thresholds);
  * the loop owns the step (clipped update, schedule), the per-epoch validation, early stopping, --max-steps,
    signals (Ctrl-C, SIGTERM: stop between steps, agreed over ranks) and the position that --resume needs.

What a run does around the loop (reading data, the tokenizer, the model, writing the checkpoint) is the
recipe's: grutext.training for classifiers, grutext.pretraining for language models. Device, process group
and backend are chosen once, before anything is built (grutext.runtime).
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch

from grutext.backend import Optimizer
from grutext.batching import Batch
from grutext.checkpoint import TrainerState
from grutext.distributed import Group
from grutext.errors import Interrupted, TrainingError
from grutext.events import EpochDone, EpochStarted, Event, StepDone
from grutext.runtime import Runtime


@dataclass
class LoopState:
    """Where the loop is; saved on interruption so that --resume continues at the same step."""

    epoch: int = 1  # the epoch in progress, 1-based
    step: int = 0  # steps done within it
    global_step: int = 0
    best_score: list[float] = field(default_factory=lambda: [-math.inf, -math.inf])  # compared as a list: bigger wins
    best_epoch: int = 0
    bad_epochs: int = 0
    loss_sum: float = 0.0  # running sums of the epoch in progress
    seen: int = 0
    tokens: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    data_fingerprint: str = ""
    backend: str = "fast"  # the optimizer state's format follows the backend
    data_position: int = 0  # streaming: records read in the pass in progress
    data_pass: int = 0  # streaming: passes over the training stream begun before this one


@dataclass
class TrainBatch:
    """One step's batch for this rank, with what the loop counts over all ranks."""

    inputs: Batch  # token ids, lengths (and character n-grams), on the CPU
    target: torch.Tensor  # what the objective's loss compares with: classes, multi-hot rows, next tokens
    texts: int  # texts in the step over all ranks (for the mean loss and examples/s)
    tokens: int  # tokens in the step over all ranks (for tokens/s)
    normalizer: float | None = None  # what the summed loss divides by (None: the objective's mean)
    step: int = 0  # the run's global step it is for (set by the loop)


class BatchSource(Protocol):
    """Where this rank's training batches come from: held in memory, read from a stream, cut from a corpus."""

    def epoch_steps(self, loop: LoopState) -> int:
        """Steps the epoch in progress takes (for the progress bar; a stream's may be an estimate)."""
        ...

    def batches(self, loop: LoopState) -> Iterator[TrainBatch]:
        """The rest of the epoch in progress, from step `loop.step`; a stream also keeps its position in
        `loop` (data_pass, data_position), so that an interrupted run resumes where it stopped."""
        ...


@dataclass
class Validation:
    """An epoch's validation: its loss, the metric that picks the epoch, and what the report shows."""

    loss: float
    metric: str
    score: float
    rank: list[float]  # bigger is better, compared as a list: the score, then the loss as a tie-break
    macro_f1: float | None = None


class Objective(Protocol):
    """What a run learns: the loss of a training batch, and how the model does on validation data."""

    metric: str  # the validation metric that picks the epoch

    def loss(self, runner: torch.nn.Module, batch: TrainBatch, device: torch.device) -> torch.Tensor:
        """The training loss of one batch (a forward pass through `runner`, the model or its DDP wrapper)."""
        ...

    def validate(self) -> Validation: ...

    def keep(self) -> None:
        """The epoch just validated is the best so far: keep what goes with its weights."""
        ...


@dataclass(frozen=True)
class Plan:
    """When the loop stops (the most epochs, --max-steps, patience for early stopping), and the peak learning
    rate that a diverging loss is reported against."""

    epochs: int
    patience: int
    max_steps: int | None
    peak_lr: float
    max_seconds: float | None = None  # training time (resumed runs count what they ran before)
    min_steps: int = 0  # patience stops nothing before this many steps: 50 validation texts cannot cut a run short


class StopSignals:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps, so a stop never lands mid-update.
    A second Ctrl-C stops at once (no state saved)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class Training:
    """What the loop trains: the model and what runs it (the model, or its DistributedDataParallel wrapper under
    torchrun), its optimizer, where batches come from, what it learns, where it is, and when it stops."""

    runner: torch.nn.Module
    model: torch.nn.Module
    optimizer: Optimizer
    source: BatchSource
    objective: Objective
    loop: LoopState
    best_state: dict[str, torch.Tensor]  # the weights of the best epoch so far
    plan: Plan


def fit(
    t: Training, device: torch.device, emit: Callable[[Event], None], stop: StopSignals, group: Group | None = None
) -> str:
    """Train until the plan says stop: clipped AdamW steps, a validation pass per epoch, early stopping on the
    objective's metric. Updates `t.loop` and `t.best_state` in place; returns why it stopped, or "interrupted"."""
    runner, model, optimizer, source, objective = t.runner, t.model, t.optimizer, t.source, t.objective
    loop, best_state, plan = t.loop, t.best_state, t.plan
    for epoch in range(loop.epoch, plan.epochs + 1):
        loop.epoch = epoch
        emit(EpochStarted(epoch, plan.epochs, source.epoch_steps(loop)))
        model.train()
        start = time.perf_counter() - loop.seconds
        for batch in source.batches(loop):
            batch.step = loop.global_step
            loss = objective.loss(runner, batch, device)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at epoch {epoch}, step {loop.step + 1}; lower --lr "
                    f"(now {plan.peak_lr:g}) or --grad-clip, and check the data"
                )
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()  # clip, update, schedule
            loop.step, loop.global_step = loop.step + 1, loop.global_step + 1
            loop.loss_sum += loss.item() * batch.texts  # rank 0 shows its own estimate of the mean
            loop.seen += batch.texts
            loop.tokens += batch.tokens
            elapsed = time.perf_counter() - start
            emit(
                StepDone(
                    epoch,
                    loop.step,
                    source.epoch_steps(loop),
                    loop.global_step,
                    loop.loss_sum / max(loop.seen, 1),
                    loop.seen / max(elapsed, 1e-9),
                    optimizer.lr,
                )
            )
            if plan.max_steps is not None and loop.global_step >= plan.max_steps:
                break
            if plan.max_seconds is not None and out_of_time(spent(loop) + elapsed >= plan.max_seconds, group):
                break
            if stopping(stop, group):
                loop.seconds = elapsed
                return "interrupted"
        end_epoch(model, objective, loop, best_state, time.perf_counter() - start, emit)
        if plan.max_steps is not None and loop.global_step >= plan.max_steps:
            return f"reached --max-steps {plan.max_steps}"
        if plan.max_seconds is not None and spent(loop) >= plan.max_seconds:
            return f"reached the time budget ({plan.max_seconds / 60:g} minutes)"
        if loop.bad_epochs and loop.bad_epochs >= plan.patience and loop.global_step >= plan.min_steps:
            held = f", held until {plan.min_steps:,} steps (--min-steps)" if loop.bad_epochs > plan.patience else ""
            return f"early stop: no better validation {objective.metric} for {loop.bad_epochs} epoch(s){held}"
        if stopping(stop, group):
            return "interrupted"
    return f"ran all {plan.epochs} epochs"


WriteCheckpoint = Callable[[dict[str, torch.Tensor], dict[str, Any], TrainerState | None], Path]


def fit_or_save(
    t: Training,
    rt: Runtime,
    emit: Callable[[Event], None],
    stop: StopSignals,
    write: WriteCheckpoint,
    where: Callable[[], str] = lambda: "",
) -> str:
    """`fit`, and the checkpoint cadence around it: a run stopped by a signal writes its best epoch so far as a
    usable checkpoint plus what --resume needs, then raises Interrupted; a loss that diverges after a first good
    epoch keeps that epoch. `write(weights, metrics, trainer state or None)` writes the run's checkpoint;
    `where()` adds to the message where a stream stopped."""
    loop, best_state = t.loop, t.best_state
    try:
        stopped = fit(t, rt.device, emit, stop, rt.group)
    except TrainingError as exc:
        if loop.best_epoch == 0:
            raise
        path = write(best_state, {"stopped": str(exc), "best_epoch": loop.best_epoch, "history": loop.history}, None)
        raise TrainingError(f"{exc}; kept the best epoch so far ({loop.best_epoch}) in {path}") from None
    if stopped == "interrupted" and stop.signum is not None:
        state = interrupted_state(t.model, t.optimizer, loop, best_state, rt.device, rt.group)
        metrics = {
            "interrupted": True,
            "epoch": loop.epoch,
            "step": loop.step,
            "best_epoch": loop.best_epoch,
            "history": loop.history,
        }
        path = write(best_state if loop.best_epoch else state.model, metrics, state)
        raise Interrupted(
            f"{signal.Signals(stop.signum).name} at epoch {loop.epoch}, step {loop.step}: saved a resumable state in "
            f"{path}{where()}; continue with the same command plus --resume",
            stop.signum,
        )
    return stopped


def out_of_time(over: bool, group: Group | None) -> bool:
    """Whether the time budget is spent; under torchrun all ranks agree, so they stop at the same step."""
    return group.any(over) if group is not None else over


def spent(loop: LoopState) -> float:
    """Training seconds of the epochs done (validation excluded)."""
    return float(sum(h["seconds"] for h in loop.history))


def end_epoch(
    model: torch.nn.Module,
    objective: Objective,
    loop: LoopState,
    best_state: dict[str, torch.Tensor],
    seconds: float,
    emit: Callable[[Event], None],
) -> None:
    """Score the epoch on validation, keep the weights if they are the best yet, report, reset the counters."""
    val = objective.validate()
    improved = val.rank > loop.best_score
    if improved:
        loop.best_score, loop.best_epoch, loop.bad_epochs = val.rank, loop.epoch, 0
        best_state.update(clone(model.state_dict()))
        objective.keep()
    else:
        loop.bad_epochs += 1
    done = EpochDone(
        loop.epoch,
        loop.loss_sum / max(loop.seen, 1),
        val.loss,
        val.metric,
        val.score,
        val.macro_f1,
        improved,
        seconds,
        loop.seen / max(seconds, 1e-9),
        loop.tokens / max(seconds, 1e-9),
    )
    loop.history.append(dataclasses.asdict(done))
    emit(done)
    loop.epoch, loop.step, loop.loss_sum, loop.seen, loop.tokens, loop.seconds = loop.epoch + 1, 0, 0.0, 0, 0, 0.0


def stopping(stop: StopSignals, group: Group | None) -> bool:
    """Whether to stop for a signal; under torchrun every rank asks at the same points and all agree, so a
    signal that reached one rank first stops them all at the same step."""
    if group is None:
        return stop.signum is not None
    if group.any(stop.signum is not None):
        stop.signum = stop.signum or signal.SIGTERM  # another rank was signalled
        return True
    return False


def clone(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def interrupted_state(
    model: torch.nn.Module,
    optimizer: Optimizer,
    loop: LoopState,
    best_state: dict[str, torch.Tensor],
    device: torch.device,
    group: Group | None,
) -> TrainerState:
    """What --resume needs: the loop, the current and best weights, the optimizer, every rank's RNG."""
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    if group is not None:  # every rank's own dropout stream
        rng = {f"{k}_rank{r}": v for r, states in enumerate(group.gather(rng)) for k, v in states.items()}
    optimizer_state = optimizer.state_dict()
    return TrainerState(
        dataclasses.asdict(loop),
        clone(model.state_dict()),
        best_state,
        optimizer_state["optimizer"],
        optimizer_state["scheduler"],
        rng,
    )


def restore(
    state: TrainerState,
    model: torch.nn.Module,
    optimizer: Optimizer,
    device: torch.device,
    group: Group | None,
) -> tuple[LoopState, dict[str, torch.Tensor]]:
    """The loop and best weights of an interrupted run, with model, optimizer and this rank's RNG put back."""
    loop = LoopState(**{"backend": "fast", **state.loop})
    model.load_state_dict(state.model)
    best = {k: v.to(device) for k, v in state.best.items()}
    optimizer.load_state_dict({"optimizer": state.optimizer, "scheduler": state.scheduler})
    suffix = f"_rank{group.rank}" if group is not None else ""
    torch.set_rng_state(state.rng["cpu" + suffix])
    if device.type == "cuda" and "cuda" + suffix in state.rng:
        torch.cuda.set_rng_state(state.rng["cuda" + suffix], device)
    return loop, best
