"""The training recipe: read data -> train tokenizer -> build model -> fit with early stopping -> save.

Progress is reported through `on_event` callbacks (dataclasses below); this module never prints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch import nn

from grutext.batching import bucket_batches, collate, infer
from grutext.checkpoint import (
    TrainerState,
    check_output_dir,
    load,
    read_json,
    read_trainer_state,
    resolve_device,
    resumable_position,
    save,
    write_trainer_state,
)
from grutext.config import ModelConfig, TokenizerConfig, TrainConfig, to_dict
from grutext.data import LabelledData, Split, load_labelled, training_splits
from grutext.decision import Decision
from grutext.errors import ConfigError, Interrupted, TrainingError
from grutext.evaluate import (
    classification_metrics,
    label_indices,
    label_matrix,
    multilabel_metrics,
    tune_decision,
)
from grutext.model import GRUClassifier
from grutext.optim import Schedule, TrainingOptimizer
from grutext.scan import use_cpu_threads
from grutext.tokenizer import encode, train_tokenizer, truncated_fraction


@dataclass(frozen=True)
class DataSpec:
    """Where the training data comes from and how to read it."""

    source: str
    text_column: str | None = None
    label_column: str | None = None
    config_name: str | None = None
    revision: str | None = None
    encoding: str = "utf-8"
    on_bad_row: str = "fail"
    label_sep: str | None = None  # split string labels on this separator (multi-label)


# ---------------------------------------------------------------------------------------------- events


@dataclass
class DiscardingResumable:
    """--overwrite replaces an interrupted run that --resume could have continued."""

    path: Path
    epoch: int
    step: int


@dataclass
class DataLoaded:
    source: str
    text_column: str
    label_column: str
    labels: list[str]
    sizes: dict[str, int]
    validation_from: str
    skipped: dict[str, int]


@dataclass
class TokenizerTrained:
    kind: str
    vocab_size: int
    seconds: float
    mean_tokens: float
    truncated: float  # fraction of training texts longer than max_length


@dataclass
class ModelBuilt:
    parameters: int
    device: str
    resumed_at: tuple[int, int] | None = None  # (epoch, step) when continuing an interrupted run


@dataclass
class EpochStarted:
    epoch: int
    epochs: int
    steps: int


@dataclass
class StepDone:
    epoch: int
    step: int  # within the epoch, 1-based
    steps: int
    global_step: int
    loss: float
    examples_per_s: float
    lr: float


@dataclass
class EpochDone:
    epoch: int
    train_loss: float
    val_loss: float
    metric: str  # the early-stopping metric
    val_score: float
    val_macro_f1: float
    improved: bool
    seconds: float
    examples_per_s: float
    tokens_per_s: float


@dataclass
class Finished:
    path: Path
    best_epoch: int
    stopped: str
    metrics: dict[str, Any]


Event = (
    DiscardingResumable | DataLoaded | TokenizerTrained | ModelBuilt | EpochStarted | StepDone | EpochDone | Finished
)


@dataclass
class TrainResult:
    path: Path
    metrics: dict[str, Any]
    history: list[EpochDone] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(total_steps: int, warmup: float) -> Callable[[int], float]:
    """Linear warmup over `warmup` of the planned steps, then linear decay to zero."""
    warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return factor


IMBALANCE_RATIO = 3.0  # largest / smallest class count from which "auto" stops on macro-F1
MAX_POS_WEIGHT = 100.0
PRIOR_MIN = 1e-4  # the rarest label frequency an output bias starts from


@dataclass
class Task:
    """What differs between single-label (softmax, cross-entropy) and multi-label (sigmoid, BCE) training."""

    labels: list[str]
    multi_label: bool
    metric: str  # the validation metric for early stopping (and for tuning multi-label thresholds)
    weight: torch.Tensor | None  # per-class loss weights, or per-label positive weights (multi-label)
    at_least_one: bool = False  # multi-label: every training text had a label, so predict at least one
    per_label: bool = False  # multi-label: tune one threshold per label at the end
    prior: torch.Tensor | None = None  # multi-label: log-odds of each label in the training split

    def targets(self, split: Split) -> torch.Tensor:
        """[N] class ids (single-label) or [N, C] multi-hot floats (multi-label)."""
        if self.multi_label:
            return label_matrix(split, self.labels)
        return torch.tensor(label_indices(split, self.labels), dtype=torch.int64)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.device)
        if self.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
        return nn.functional.cross_entropy(logits, target, weight=weight)

    def score(
        self, logits: torch.Tensor, target: torch.Tensor, per_label: bool = False
    ) -> tuple[dict[str, Any], float, float, Decision | None]:
        """(metrics, loss, early-stopping score, decision) of logits [N, C] against targets."""
        loss = float(self.loss(logits, target))
        if not self.multi_label:
            metrics = classification_metrics(target.tolist(), logits.argmax(dim=1).tolist(), self.labels)
            return metrics, loss, metrics["accuracy" if self.metric == "micro_f1" else self.metric], None
        probs = torch.sigmoid(logits)
        decision = tune_decision(probs, target, self.labels, self.metric, per_label, self.at_least_one)
        metrics = multilabel_metrics(target, decision.apply(probs), self.labels)
        return metrics, loss, metrics[self.metric], decision


def make_task(data: LabelledData, labels: list[str], cfg: TrainConfig) -> Task:
    """Resolve the early-stopping metric and class weights for this data."""
    rows = data.splits["train"].labels
    tally = Counter(name for row in rows for name in row)
    counts = torch.tensor([float(tally[name]) for name in labels])
    metric = cfg.early_stop_metric
    if metric == "auto":
        imbalanced = float(counts.max()) >= IMBALANCE_RATIO * float(counts.clamp(min=1).min())
        metric = "macro_f1" if data.multi_label or imbalanced else "accuracy"
    if data.multi_label and metric == "accuracy":
        raise ConfigError("--early-stop-metric accuracy does not apply to multi-label data; use micro_f1 or macro_f1")
    weight: torch.Tensor | None = None
    if cfg.class_weight == "balanced":
        if data.multi_label:  # BCE positive weight: negatives per positive, capped
            weight = ((len(rows) - counts) / counts.clamp(min=1)).clamp(1.0, MAX_POS_WEIGHT)
        else:  # n / (classes * count): the sklearn rule
            weight = len(rows) / (len(labels) * counts.clamp(min=1))
    elif cfg.class_weight != "none":
        weight = _weights_from_file(Path(cfg.class_weight), labels)
    prior = None
    if data.multi_label:
        freq = (counts / max(len(rows), 1)).clamp(PRIOR_MIN, 1 - PRIOR_MIN)
        prior = torch.log(freq / (1 - freq))
    return Task(labels, data.multi_label, metric, weight, all(rows), cfg.thresholds == "per-label", prior)


def _weights_from_file(path: Path, labels: list[str]) -> torch.Tensor:
    import json

    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--class-weight {path}: no such file (use none, balanced, or a JSON file)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--class-weight {path}: cannot read a JSON object ({exc})") from None
    if not isinstance(mapping, dict):
        raise ConfigError(f"--class-weight {path}: expected a JSON object mapping label -> weight")
    unknown = sorted(set(mapping) - set(labels))
    if unknown:
        raise ConfigError(
            f"--class-weight {path}: labels not in the data: {', '.join(unknown)} (labels: {', '.join(labels)})"
        )
    weights = []
    for label in labels:
        value = mapping.get(label, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
            raise ConfigError(f"--class-weight {path}: weight of {label!r} must be a positive number, got {value!r}")
        weights.append(float(value))
    return torch.tensor(weights)


# ---------------------------------------------------------------------------------------------- state


@dataclass
class LoopState:
    """Where the loop is; saved on interruption so that --resume continues at the same step."""

    epoch: int = 1  # the epoch in progress, 1-based
    step: int = 0  # steps done within it
    global_step: int = 0
    best_score: list[float] = field(default_factory=lambda: [-1.0, -math.inf])  # [validation score, -val loss]
    best_epoch: int = 0
    bad_epochs: int = 0
    loss_sum: float = 0.0  # running sums of the epoch in progress
    seen: int = 0
    tokens: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    data_fingerprint: str = ""


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


def fingerprint(data: LabelledData) -> str:
    """A hash of the training and validation rows, so --resume refuses data that changed."""
    digest = hashlib.sha256()
    for name in ("train", "validation"):
        split = data.splits[name]
        for text, labels in zip(split.texts, split.labels, strict=True):
            digest.update(text.encode("utf-8", "surrogatepass") + b"\x00" + "\x01".join(labels).encode() + b"\x02")
        digest.update(b"\x03")
    return digest.hexdigest()


def _config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    return [f"{key}: {saved.get(key)!r} -> {value!r}" for key, value in current.items() if saved.get(key) != value]


def _train_differences(saved: dict[str, Any], multi_label: bool, cfg: TrainConfig) -> list[str]:
    """Changed training settings, with the learning rate as resolved (not the `None` that means "default")."""
    current = to_dict(cfg)
    saved = {**saved, "device": cfg.device}  # the device may change between runs
    if "resolved_lr" in saved:
        current["lr"] = cfg.resolved_lr(multi_label)
        saved["lr"] = saved["resolved_lr"]
    return _config_differences(saved, current)


# ---------------------------------------------------------------------------------------------- train


def train(
    spec: DataSpec,
    tok_cfg: TokenizerConfig,
    model_options: Mapping[str, Any],
    cfg: TrainConfig,
    output: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> TrainResult:
    """Train a classifier on `spec` and write the checkpoint to `output` (or continue an interrupted run)."""
    emit = on_event or (lambda event: None)
    # Fail on bad settings and unwritable outputs before spending any time on data.
    ModelConfig(vocab_size=tok_cfg.vocab_size, num_labels=2, **model_options)
    trainer_state: TrainerState | None = None
    if resume:
        trainer_state = read_trainer_state(output)
        saved = read_json(output / "config.json", "config")
        differences = [
            *_config_differences(saved.get("tokenizer", {}), to_dict(tok_cfg)),
            *_config_differences(saved.get("model", {}), dict(model_options)),
            *_train_differences(saved.get("train", {}), bool(saved.get("model", {}).get("multi_label")), cfg),
        ]
        if differences:
            raise ConfigError(
                f"cannot resume {output}: settings differ from the interrupted run ({'; '.join(differences)}); "
                "resume with the original settings, or start a new run (another --output, or --overwrite)"
            )
    else:
        check_output_dir(output, overwrite)
        if overwrite and (position := resumable_position(output)) is not None:
            emit(DiscardingResumable(output, *position))
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        use_cpu_threads()
    seed_everything(cfg.seed)

    # ---- data
    data = load_labelled(
        spec.source,
        text_column=spec.text_column,
        label_column=spec.label_column,
        config_name=spec.config_name,
        revision=spec.revision,
        encoding=spec.encoding,
        on_bad_row=spec.on_bad_row,
        label_sep=spec.label_sep,
    )
    data = training_splits(data, cfg.val_fraction, cfg.seed)
    labels = data.label_names()
    task = make_task(data, labels, cfg)
    sizes = {name: len(split.texts) for name, split in data.splits.items()}
    emit(
        DataLoaded(spec.source, data.text_column, data.label_column, labels, sizes, data.validation_from, data.skipped)
    )

    # ---- tokenizer: trained on the training split only (a resumed run reuses the saved one)
    start = time.perf_counter()
    if trainer_state is not None:
        previous = load(output)
        if previous.labels != labels:
            raise ConfigError(f"cannot resume {output}: the data's labels differ from the interrupted run's")
        tokenizer = previous.tokenizer
    else:
        tokenizer = train_tokenizer(data.splits["train"].texts, tok_cfg)
    ids = {name: encode(tokenizer, split.texts, tok_cfg) for name, split in data.splits.items()}
    emit(
        TokenizerTrained(
            tok_cfg.kind,
            tokenizer.get_vocab_size(),
            time.perf_counter() - start,
            float(np.mean([len(r) for r in ids["train"]])),
            truncated_fraction(tokenizer, data.splits["train"].texts[:2000], tok_cfg),
        )
    )

    # ---- model, optimizer, schedule
    model_cfg = ModelConfig(
        vocab_size=tokenizer.get_vocab_size(), num_labels=len(labels), **model_options, multi_label=data.multi_label
    )
    model = GRUClassifier(model_cfg).to(device)
    if task.prior is not None:
        # Start every sigmoid at its label's frequency, not at 0.5: rare labels are otherwise spent for
        # thousands of steps pulling their bias down before they learn anything (Lin et al. 2017).
        with torch.no_grad():
            model.classifier.bias.copy_(task.prior)
    lr = cfg.resolved_lr(data.multi_label)
    steps_per_epoch = math.ceil(len(ids["train"]) / cfg.batch_size)
    total_steps = min(cfg.epochs * steps_per_epoch, cfg.max_steps or math.inf)
    # torch's fused AdamW kernel does the whole update in one pass over the weights. On the CPU the embedding
    # table gets LazyAdamW instead: the same updates, paid only for the rows a batch touches.
    optimizer = TrainingOptimizer(
        list(model.parameters()), model.embedding, lr=lr, weight_decay=cfg.weight_decay, lazy_rows=device.type == "cpu"
    )
    scheduler = Schedule(optimizer.dense, lr_lambda(int(total_steps), cfg.warmup))
    loop = LoopState(data_fingerprint=fingerprint(data))
    best_state = _clone(model.state_dict())
    if trainer_state is not None:
        if trainer_state.loop.get("data_fingerprint") != loop.data_fingerprint:
            raise ConfigError(
                f"cannot resume {output}: the training or validation data changed since it was saved; restore the "
                "data to resume, or start a new run (another --output, or --overwrite to discard the saved state)"
            )
        loop = LoopState(**trainer_state.loop)
        model.load_state_dict(trainer_state.model)
        best_state = {k: v.to(device) for k, v in trainer_state.best.items()}
        optimizer.load_state_dict(trainer_state.optimizer)
        scheduler.load_state_dict(trainer_state.scheduler)
        torch.set_rng_state(trainer_state.rng["cpu"])
        if device.type == "cuda" and "cuda" in trainer_state.rng:
            torch.cuda.set_rng_state(trainer_state.rng["cuda"])
    emit(ModelBuilt(model.num_parameters(), str(device), (loop.epoch, loop.step) if trainer_state else None))
    y = {name: task.targets(split) for name, split in data.splits.items()}
    sections: dict[str, Any] = {"train": to_dict(cfg), "data": _data_section(spec, data, sizes)}
    sections["train"]["resolved_early_stop_metric"] = task.metric
    sections["train"]["resolved_lr"] = lr
    if task.weight is not None:
        sections["train"]["resolved_class_weight"] = dict(zip(labels, task.weight.tolist(), strict=True))

    def write(weights: dict[str, torch.Tensor], metrics: dict[str, Any], state: TrainerState | None) -> Path:
        model.load_state_dict(weights)
        if task.multi_label and "decision" not in sections:  # an interrupted run: provisional thresholds
            sections["decision"] = Decision((0.5,) * len(labels), task.at_least_one).to_dict(labels)
        return save(
            output,
            model=model,
            tokenizer=tokenizer,
            tokenizer_config=tok_cfg,
            labels=labels,
            sections=sections,
            metrics=metrics,
            overwrite=True if resume else overwrite,
            extra=(lambda root: write_trainer_state(root, state)) if state is not None else None,
        )

    with StopSignals() as stop:
        try:
            stopped = fit(model, optimizer, scheduler, loop, best_state, ids, y, task, cfg, device, emit, stop)
        except TrainingError as exc:
            if loop.best_epoch == 0:
                raise
            path = write(
                best_state, {"stopped": str(exc), "best_epoch": loop.best_epoch, "history": loop.history}, None
            )
            raise TrainingError(f"{exc}; kept the best epoch so far ({loop.best_epoch}) in {path}") from None
    if stopped == "interrupted" and stop.signum is not None:
        rng = {"cpu": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        state = TrainerState(
            dataclasses.asdict(loop),
            _clone(model.state_dict()),
            best_state,
            optimizer.state_dict(),
            scheduler.state_dict(),
            rng,
        )
        kept = best_state if loop.best_epoch else optimizer.caught_up(state.model, "embedding.weight")
        path = write(
            kept,
            {
                "interrupted": True,
                "epoch": loop.epoch,
                "step": loop.step,
                "best_epoch": loop.best_epoch,
                "history": loop.history,
            },
            state,
        )
        name = signal.Signals(stop.signum).name
        raise Interrupted(
            f"{name} at epoch {loop.epoch}, step {loop.step}: saved a resumable state in {path}; continue with "
            f"the same command plus --resume",
            stop.signum,
        )

    # ---- final scores of the kept model; the test split is only reported, never used to choose
    model.load_state_dict(best_state)
    val_logits = infer(model, ids["validation"], device)
    val_metrics, _, _, decision = task.score(val_logits, y["validation"], per_label=task.per_label)
    if decision is not None:
        sections["decision"] = decision.to_dict(labels)
    metrics: dict[str, Any] = {
        "best_epoch": loop.best_epoch,
        "epochs_run": len(loop.history),
        "stopped": stopped,
        "train_seconds": round(sum(h["seconds"] for h in loop.history), 2),
        "validation": val_metrics,
    }
    if "test" in ids:
        test_logits = infer(model, ids["test"], device)
        if decision is not None:  # thresholds come from validation, never from test
            probs = torch.sigmoid(test_logits)
            metrics["test"] = multilabel_metrics(y["test"], decision.apply(probs), labels)
        else:
            metrics["test"] = task.score(test_logits, y["test"])[0]
    metrics["history"] = loop.history
    path = write(best_state, metrics, None)
    emit(Finished(path, loop.best_epoch, stopped, metrics))
    return TrainResult(path, metrics, [EpochDone(**h) for h in loop.history])


def _clone(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _data_section(spec: DataSpec, data: LabelledData, sizes: dict[str, int]) -> dict[str, Any]:
    return {
        "source": spec.source,
        "config_name": spec.config_name,
        "revision": spec.revision,
        "text_column": data.text_column,
        "label_column": data.label_column,
        "multi_label": data.multi_label,
        "sizes": sizes,
        "validation_from": data.validation_from,
        "skipped_rows": data.skipped,
    }


def clip_gradients(grads: list[torch.Tensor], max_norm: float) -> None:
    """clip_grad_norm_ over these gradients, in place, without its multiply when the norm is already within
    bounds (the scale would be exactly 1.0): on sentence-sized batches that pass is 5% of a step. The
    embedding table's comes from the optimizer as its block of rows (TrainingOptimizer.gradients)."""
    total = nn.utils.get_total_norm(grads)
    scale = max_norm / (total + 1e-6)
    if not float(scale) >= 1.0:  # also when the norm is not finite, as torch does
        torch._foreach_mul_(grads, scale)


def fit(
    model: GRUClassifier,
    optimizer: TrainingOptimizer,
    scheduler: Schedule,
    loop: LoopState,
    best_state: dict[str, torch.Tensor],
    ids: dict[str, list[list[int]]],
    y: dict[str, torch.Tensor],
    task: Task,
    cfg: TrainConfig,
    device: torch.device,
    emit: Callable[[Event], None],
    stop: StopSignals,
) -> str:
    """The loop: clipped AdamW steps, a validation pass per epoch, early stopping on the task's metric.
    Updates `loop` and `best_state` in place; returns why it stopped (or "interrupted")."""
    train_ids, train_y = ids["train"], y["train"]
    lengths = [len(r) for r in train_ids]
    for epoch in range(loop.epoch, cfg.epochs + 1):
        loop.epoch = epoch
        # The batch order depends only on (seed, epoch), so a resumed run sees the same order.
        batches = bucket_batches(lengths, cfg.batch_size, random.Random(f"{cfg.seed}-{epoch}"))
        if cfg.max_steps is not None:
            batches = batches[: max(0, cfg.max_steps - (loop.global_step - loop.step))]
        emit(EpochStarted(epoch, cfg.epochs, len(batches)))
        model.train()
        start = time.perf_counter() - loop.seconds
        for step in range(loop.step, len(batches)):
            batch = collate(train_ids, batches[step]).to(device)
            target = train_y[batch.index].to(device)  # [B] or [B, C]
            optimizer.prepare(batch.ids)  # the embedding rows this batch reads, brought up to date
            logits = model(batch.ids, batch.lengths)  # [B, C]
            loss = task.loss(logits, target)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at epoch {epoch}, step {step + 1}; lower --lr "
                    f"(now {optimizer.dense.initial_lr:g}) or --grad-clip, and check the data"
                )
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            clip_gradients(optimizer.gradients(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            loop.step, loop.global_step = step + 1, loop.global_step + 1
            loop.loss_sum += loss.item() * len(batch.index)
            loop.seen += len(batch.index)
            loop.tokens += int(batch.lengths.sum())
            elapsed = time.perf_counter() - start
            emit(
                StepDone(
                    epoch,
                    step + 1,
                    len(batches),
                    loop.global_step,
                    loop.loss_sum / loop.seen,
                    loop.seen / max(elapsed, 1e-9),
                    float(scheduler.get_last_lr()[0]),
                )
            )
            if stop.signum is not None:
                loop.seconds = elapsed
                return "interrupted"
        optimizer.flush()
        seconds = time.perf_counter() - start
        val_metrics, val_loss, val_score, _ = task.score(infer(model, ids["validation"], device), y["validation"])
        score = [val_score, -val_loss]
        improved = score > loop.best_score
        if improved:
            loop.best_score, loop.best_epoch, loop.bad_epochs = score, epoch, 0
            best_state.update(_clone(model.state_dict()))
        else:
            loop.bad_epochs += 1
        done = EpochDone(
            epoch,
            loop.loss_sum / max(loop.seen, 1),
            val_loss,
            task.metric,
            val_score,
            val_metrics["macro_f1"],
            improved,
            seconds,
            loop.seen / max(seconds, 1e-9),
            loop.tokens / max(seconds, 1e-9),
        )
        loop.history.append(dataclasses.asdict(done))
        emit(done)
        loop.epoch, loop.step, loop.loss_sum, loop.seen, loop.tokens, loop.seconds = epoch + 1, 0, 0.0, 0, 0, 0.0
        if cfg.max_steps is not None and loop.global_step >= cfg.max_steps:
            return f"reached --max-steps {cfg.max_steps}"
        if loop.bad_epochs and loop.bad_epochs >= cfg.patience:  # patience 0: stop at the first worse epoch
            return f"early stop: no better validation {task.metric} for {loop.bad_epochs} epoch(s)"
        if stop.signum is not None:
            return "interrupted"
    return f"ran all {cfg.epochs} epochs"
