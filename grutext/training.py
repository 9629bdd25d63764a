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
from tokenizers import Tokenizer

from grutext.artifacts import read_json
from grutext.backend import Optimizer, choose, make_optimizer, prepare, resolve_device, torch_threads
from grutext.batching import TokenRows, bucket_batches, collate, infer
from grutext.checkpoint import (
    TrainerState,
    check_output_dir,
    load,
    read_trainer_state,
    resumable_position,
    save,
    write_trainer_state,
)
from grutext.config import DataShape, ModelConfig, TokenizerConfig, TrainConfig, to_dict
from grutext.data import LabelledData, load_labelled, training_splits
from grutext.decision import Decision
from grutext.distributed import Group
from grutext.errors import ConfigError, Interrupted, TrainingError
from grutext.head import Head, make_head
from grutext.model import GRUClassifier
from grutext.pretrained import pretrained_embeddings
from grutext.tokenizer import (
    PAD_ID,
    UNK_ID,
    configure_truncation,
    encode_inputs,
    train_tokenizer,
    truncated_fraction,
)


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


DATA_OPTIONS = ("text_column", "label_column", "config_name", "revision", "encoding", "on_bad_row", "label_sep")
TOKENIZER_OPTIONS = {"tokenizer": "kind", "vocab_size": "vocab_size", "lowercase": "lowercase"}
TOKENIZER_OPTIONS |= {"max_length": "max_length", "truncation": "truncation", "min_frequency": "min_frequency"}


def configs_from_options(
    source: str, options: Mapping[str, Any]
) -> tuple[DataSpec, TokenizerConfig, ModelConfig, TrainConfig]:
    """Settings named as the command line names them (`embed_dim` for --embed-dim, `tokenizer` for
    --tokenizer), left out for their defaults, as the four config objects: the one mapping from flags to
    fields, shared by `grutext train` and `grutext.train()`."""
    groups: dict[str, dict[str, Any]] = {"data": {}, "tokenizer": {}, "model": {}, "train": {}}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = []
    for name, value in options.items():
        if name in DATA_OPTIONS:
            groups["data"][name] = value
        elif name in TOKENIZER_OPTIONS:
            groups["tokenizer"][TOKENIZER_OPTIONS[name]] = value
        elif name in model_fields:
            groups["model"][name] = value
        elif name in train_fields:
            groups["train"][name] = value
        else:
            unknown.append(name)
    if unknown:
        known = sorted([*DATA_OPTIONS, *TOKENIZER_OPTIONS, *model_fields, *train_fields])
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return (
        DataSpec(source, **groups["data"]),
        TokenizerConfig(**groups["tokenizer"]),
        ModelConfig(**groups["model"]),
        TrainConfig(**groups["train"]),
    )


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
class UnknownLabels:
    """Labels of a split that the training split lacks: left out of validation, counted as errors in test."""

    split: str
    origin: str
    labels: dict[str, int]  # label -> texts holding it


@dataclass
class TokenizerTrained:
    kind: str
    vocab_size: int
    seconds: float
    mean_tokens: float
    truncated: float  # fraction of training texts longer than max_length


@dataclass
class VectorsLoaded:
    summary: dict[str, Any]  # file, format, dim, rows read and found, coverage of vocabulary rows and tokens


@dataclass
class ModelBuilt:
    parameters: int
    device: str
    backend: str  # "fast" (the CPU path) or "reference"
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
    DiscardingResumable
    | DataLoaded
    | UnknownLabels
    | TokenizerTrained
    | VectorsLoaded
    | ModelBuilt
    | EpochStarted
    | StepDone
    | EpochDone
    | Finished
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


IMBALANCE_RATIO = 3.0  # largest / smallest class count from which "auto" stops on macro-F1
MAX_POS_WEIGHT = 100.0
PRIOR_MIN = 1e-4  # the rarest label frequency an output bias starts from


@dataclass
class Task:
    """How this run trains its head: the early-stopping metric, loss weights, the output biases' start."""

    head: Head
    metric: str  # the validation metric for early stopping (and for tuning multi-label thresholds)
    weight: torch.Tensor | None  # per-class loss weights, or per-label positive weights (multi-label)
    per_label: bool = False  # multi-label: tune one threshold per label at the end
    prior: torch.Tensor | None = None  # multi-label: log-odds of each label in the training split
    kept_decision: dict[str, Any] | None = None  # multi-label: the thresholds tuned for the best epoch so far

    smoothing: float = 0.0  # single-label: label smoothing of the training loss

    def loss(self, logits: torch.Tensor, target: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:
        """The mean loss, or (with `normalizer`) the summed loss over it."""
        smoothing = self.smoothing if logits.requires_grad else 0.0
        if normalizer is None:
            return self.head.loss(logits, target, self.weight, smoothing)
        return self.head.loss(logits, target, self.weight, smoothing, reduction="sum") / normalizer

    def training_loss(
        self, logits: torch.Tensor, target: torch.Tensor, heads: int, normalizer: float | None = None
    ) -> torch.Tensor:
        """The loss of a training forward: with several heads side by side ([B, heads x C], the bigram
        head's model), the sum of each head's own loss."""
        parts = logits.chunk(heads, dim=1) if heads > 1 else (logits,)
        total = self.loss(parts[0], target, normalizer)
        for part in parts[1:]:
            total = total + self.loss(part, target, normalizer)
        return total

    def normalizer(self, target: torch.Tensor) -> float:
        """What the mean loss over these targets divides by: rows (times labels, multi-label), or the rows'
        class weights (weighted single-label, as torch's cross-entropy does)."""
        if self.head.multi_label:
            return float(target.numel())
        if self.weight is not None:
            return float(self.weight[target].sum())
        return float(len(target))

    def score(
        self, logits: torch.Tensor, target: torch.Tensor, per_label: bool = False
    ) -> tuple[dict[str, Any], float, float]:
        """(metrics, loss, early-stopping score) of logits [N, C] against targets; a multi-label head first
        tunes its thresholds on these rows (validation)."""
        loss = float(self.loss(logits, target))
        probs = self.head.probabilities(logits)
        self.head.fit_decision(probs, target, self.metric, per_label)
        metrics = self.head.metrics(probs, target)
        metric = "accuracy" if self.metric == "micro_f1" and not self.head.multi_label else self.metric
        return metrics, loss, metrics[metric]


def make_task(data: LabelledData, labels: list[str], cfg: TrainConfig) -> Task:
    """Resolve the early-stopping metric and class weights for this data."""
    rows = data.splits["train"].labels
    tally = Counter(name for row in rows for name in row)
    return task_from_counts(labels, tally, len(rows), data.multi_label, all(rows), cfg)


def task_from_counts(
    labels: list[str], tally: Counter[str], rows: int, multi_label: bool, all_labelled: bool, cfg: TrainConfig
) -> Task:
    """The task from the training split's label counts (all a stream needs to have seen)."""
    counts = torch.tensor([float(tally[name]) for name in labels])
    metric = cfg.early_stop_metric
    if metric == "auto":
        imbalanced = float(counts.max()) >= IMBALANCE_RATIO * float(counts.clamp(min=1).min())
        metric = "macro_f1" if multi_label or imbalanced else "accuracy"
    if multi_label and metric == "accuracy":
        raise ConfigError("--early-stop-metric accuracy does not apply to multi-label data; use micro_f1 or macro_f1")
    weight: torch.Tensor | None = None
    if cfg.class_weight == "balanced":
        if multi_label:  # BCE positive weight: negatives per positive, capped
            weight = ((rows - counts) / counts.clamp(min=1)).clamp(1.0, MAX_POS_WEIGHT)
        else:  # n / (classes * count): the sklearn rule
            weight = rows / (len(labels) * counts.clamp(min=1))
    elif cfg.class_weight != "none":
        weight = _weights_from_file(Path(cfg.class_weight), labels)
    prior = None
    if multi_label:
        freq = (counts / max(rows, 1)).clamp(PRIOR_MIN, 1 - PRIOR_MIN)
        prior = torch.log(freq / (1 - freq))
    head = make_head(labels, multi_label)
    if multi_label:  # every training text had a label: predict at least one
        head = make_head(labels, True, Decision((0.5,) * len(labels), at_least_one=all_labelled))
    return Task(head, metric, weight, cfg.thresholds == "per-label", prior, smoothing=cfg.label_smoothing)


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
    backend: str = "fast"  # the optimizer state's format follows the backend
    data_position: int = 0  # streaming: records read in the pass in progress
    data_pass: int = 0  # streaming: passes over the training stream begun before this one


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
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    output: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> TrainResult:
    """Train a classifier on `spec` and write the checkpoint to `output` (or continue an interrupted run)."""
    emit = on_event or (lambda event: None)
    trainer_state: TrainerState | None = None
    if resume:
        trainer_state = read_trainer_state(output)
        saved = read_json(output / "config.json", "config")
        saved_model = _legacy_cells(saved.get("model", {}))
        if model_cfg.embed_dim is None:  # the default (or the vectors') dimension, resolved by that run
            model_cfg = dataclasses.replace(model_cfg, embed_dim=saved_model.get("embed_dim"))
        if model_cfg.bigram_buckets is None:  # the default: the head that run had (none, if it predates the head)
            model_cfg = dataclasses.replace(model_cfg, bigram_buckets=saved_model.get("bigram_buckets", 0))
        if model_cfg.char_ngrams is None:  # likewise: the n-grams that run read (none, if it predates them)
            model_cfg = dataclasses.replace(model_cfg, char_ngrams=saved_model.get("char_ngrams", "0"))
        differences = [
            *_config_differences(saved.get("tokenizer", {}), to_dict(tok_cfg)),
            *_config_differences(saved_model, to_dict(model_cfg)),
            *_train_differences(saved.get("train", {}), _saved_multi_label(saved), cfg),
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
    if cfg.streaming:
        from grutext.stream_training import train_streaming

        model_cfg.resolved_for(False, tok_cfg.kind, streaming=True)  # refuses --char-ngrams before reading data

        return train_streaming(
            spec, tok_cfg, model_cfg, cfg, output, overwrite=overwrite, resume=resume, on_event=on_event
        )
    device = resolve_device(cfg.device)
    group = Group.from_env(device.type)  # torchrun: one process per rank
    if group is not None:
        if device.type == "cuda":
            device = torch.device("cuda", group.local_rank)
            torch.cuda.set_device(device)
        if not group.leader:  # progress and logs come from rank 0 only
            emit = _silent
    # Under torchrun the reference backend runs: LazyAdamW's sparse rows do not go through DDP's all-reduce.
    backend = choose(device, "reference" if group is not None and cfg.backend == "auto" else cfg.backend)
    if group is not None and backend == "fast":
        raise ConfigError("--backend fast cannot train data-parallel (its embedding rows are sparse); use auto")
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
    model_cfg = model_cfg.resolved_for(data.multi_label, tok_cfg.kind)
    sizes = {name: len(split.texts) for name, split in data.splits.items()}
    emit(
        DataLoaded(spec.source, data.text_column, data.label_column, labels, sizes, data.validation_from, data.skipped)
    )
    if data.unseen_in_validation:
        emit(UnknownLabels("validation", data.splits["validation"].origin, data.unseen_in_validation))

    # ---- tokenizer: trained on the training split only (a resumed run reuses the saved one); under torchrun
    # rank 0 trains it (and reads the vectors) and every other rank receives it
    start = time.perf_counter()
    pretrained = None
    if group is not None and not group.leader:
        tokenizer_json, embed_dim = group.broadcast(None)
        tokenizer = Tokenizer.from_str(tokenizer_json)
        configure_truncation(tokenizer, tok_cfg)
        model_cfg = dataclasses.replace(model_cfg, embed_dim=embed_dim)
    elif trainer_state is not None:
        previous = load(output)
        if previous.labels != labels:
            raise ConfigError(f"cannot resume {output}: the data's labels differ from the interrupted run's")
        tokenizer = previous.tokenizer
    else:
        tokenizer = train_tokenizer(data.splits["train"].texts, tok_cfg)
    tokenizer_seconds = time.perf_counter() - start
    if cfg.vectors is not None and trainer_state is None and (group is None or group.leader):
        # a resumed run has its table in the saved state; DDP hands rank 0's table to the other ranks
        pretrained = pretrained_embeddings(
            cfg.vectors,
            tokenizer,
            tok_cfg,
            data.splits["train"].texts,
            cfg.seed,
            model_cfg.embed_dim,
            cfg.vectors_std,
        )
        tokenizer = pretrained.tokenizer
        model_cfg = dataclasses.replace(model_cfg, embed_dim=pretrained.summary["dim"])
    model_cfg = dataclasses.replace(model_cfg, embed_dim=model_cfg.embedding_size)
    if group is not None and group.leader:
        group.broadcast((tokenizer.to_str(), model_cfg.embed_dim))
    ids: dict[str, list[list[int]]] = {}
    grams: dict[str, TokenRows] = {}  # each split's character n-grams, for a model that reads them
    for name, split in data.splits.items():
        ids[name], split_grams = encode_inputs(tokenizer, split.texts, tok_cfg, model_cfg)
        if split_grams is not None:
            grams[name] = split_grams
    emit(
        TokenizerTrained(
            tok_cfg.kind,
            tokenizer.get_vocab_size(),
            tokenizer_seconds,
            float(np.mean([len(r) for r in ids["train"]])),
            truncated_fraction(tokenizer, data.splits["train"].texts[:2000], tok_cfg),
        )
    )
    if pretrained is not None:
        pretrained.summary["token_coverage"] = pretrained.token_coverage(ids["train"])
        emit(VectorsLoaded(pretrained.summary))

    # ---- model, optimizer, schedule
    shape = DataShape(tokenizer.get_vocab_size(), len(labels), data.multi_label)
    model = GRUClassifier(model_cfg, shape)
    if pretrained is not None:
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(pretrained.weights))
    if task.prior is not None:
        # Start every sigmoid at its label's frequency, not at 0.5: rare labels are otherwise spent for
        # thousands of steps pulling their bias down before they learn anything (Lin et al. 2017).
        with torch.no_grad():
            model.classifier.bias.copy_(task.prior)
            if model.cfg.bigram_buckets:
                model.bigram_classifier.bias.copy_(task.prior)
    model = prepare(model, device, backend)
    world = group.world if group is not None else 1
    runner: torch.nn.Module = model
    if group is not None:  # averages the gradients over ranks, and starts every rank from rank 0's weights
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    lr = cfg.resolved_lr(data.multi_label)
    steps_per_epoch = math.ceil(len(ids["train"]) / (cfg.batch_size * world))
    total_steps = int(min(cfg.epochs * steps_per_epoch, cfg.max_steps or math.inf))
    optimizer = make_optimizer(
        model,
        backend,
        lr=lr,
        weight_decay=cfg.weight_decay,
        grad_clip=cfg.grad_clip,
        total_steps=total_steps,
        warmup=cfg.warmup,
    )
    loop = LoopState(data_fingerprint=fingerprint(data), backend=backend)
    best_state = _clone(model.state_dict())
    if trainer_state is not None:
        if trainer_state.loop.get("data_fingerprint") != loop.data_fingerprint:
            raise ConfigError(
                f"cannot resume {output}: the training or validation data changed since it was saved; restore the "
                "data to resume, or start a new run (another --output, or --overwrite to discard the saved state)"
            )
        saved_backend = trainer_state.loop.get("backend", "fast")
        if saved_backend != backend:
            raise ConfigError(
                f"cannot resume {output}: it was trained on the {saved_backend} backend and would continue on the "
                f"{backend} one ({device.type}); resume on the device it started on"
            )
        loop = LoopState(**{"backend": saved_backend, **trainer_state.loop})
        model.load_state_dict(trainer_state.model)
        best_state = {k: v.to(device) for k, v in trainer_state.best.items()}
        optimizer.load_state_dict({"optimizer": trainer_state.optimizer, "scheduler": trainer_state.scheduler})
        suffix = f"_rank{group.rank}" if group is not None else ""
        torch.set_rng_state(trainer_state.rng["cpu" + suffix])
        if device.type == "cuda" and "cuda" + suffix in trainer_state.rng:
            torch.cuda.set_rng_state(trainer_state.rng["cuda" + suffix], device)
    emit(ModelBuilt(model.num_parameters(), str(device), backend, (loop.epoch, loop.step) if trainer_state else None))
    y = {name: task.head.targets(data.splits[name]) for name in ("train", "validation")}
    sections: dict[str, Any] = {"train": to_dict(cfg), "data": _data_section(spec, data, sizes)}
    sections["train"]["resolved_early_stop_metric"] = task.metric
    sections["train"]["resolved_lr"] = lr
    sections["train"]["resolved_word_dropout"] = cfg.resolved_word_dropout(data.multi_label)
    sections["train"]["world_size"] = world
    if task.weight is not None:
        sections["train"]["resolved_class_weight"] = dict(zip(labels, task.weight.tolist(), strict=True))
    if pretrained is not None:
        sections["vectors"] = pretrained.summary
    elif trainer_state is not None and "vectors" in saved:
        sections["vectors"] = saved["vectors"]

    write = checkpoint_writer(output, model, tokenizer, tok_cfg, labels, sections, task, group, resume or overwrite)

    with StopSignals() as stop, torch_threads(device, backend):
        try:
            stopped = fit(
                runner, model, optimizer, loop, best_state, ids, y, task, cfg, device, emit, stop, group, grams
            )
        except TrainingError as exc:
            if loop.best_epoch == 0:
                raise
            path = write(
                best_state, {"stopped": str(exc), "best_epoch": loop.best_epoch, "history": loop.history}, None
            )
            raise TrainingError(f"{exc}; kept the best epoch so far ({loop.best_epoch}) in {path}") from None
        if stopped == "interrupted" and stop.signum is not None:
            state = interrupted_state(model, optimizer, loop, best_state, device, group)
            path = write(
                best_state if loop.best_epoch else state.model,
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
                f"{name} at epoch {loop.epoch}, step {loop.step}: saved a resumable state in {path}; continue "
                "with the same command plus --resume",
                stop.signum,
            )

        # ---- final scores of the kept model; the test split is only reported, never used to choose
        model.load_state_dict(best_state)
        val_metrics, _, _ = task.score(
            _infer(model, ids["validation"], device, group, grams.get("validation")), y["validation"], task.per_label
        )
        task.kept_decision = task.head.decision_section()
        metrics: dict[str, Any] = {
            "best_epoch": loop.best_epoch,
            "epochs_run": len(loop.history),
            "stopped": stopped,
            "train_seconds": round(sum(h["seconds"] for h in loop.history), 2),
            "validation": val_metrics,
        }
        if "test" in ids:  # thresholds come from validation, never from test
            test = data.splits["test"]
            test_probs = task.head.probabilities(_infer(model, ids["test"], device, group, grams.get("test")))
            metrics["test"] = task.head.score_rows(test_probs, test.labels, test.origin)
            if "unknown_labels" in metrics["test"]:
                emit(UnknownLabels("test", test.origin, metrics["test"]["unknown_labels"]))
    metrics["history"] = loop.history
    path = write(best_state, metrics, None)
    emit(Finished(path, loop.best_epoch, stopped, metrics))
    if group is not None:
        group.close()
    return TrainResult(path, metrics, [EpochDone(**h) for h in loop.history])


def _legacy_cells(model: dict[str, Any]) -> dict[str, Any]:
    """A saved model section in today's terms (format 1 named the cells torch/seed)."""
    from grutext.config import LEGACY_CELLS

    return {**model, "cell": LEGACY_CELLS.get(model.get("cell", ""), model.get("cell"))}


def _saved_multi_label(config: dict[str, Any]) -> bool:
    return bool(config.get("shape", config.get("model", {})).get("multi_label"))


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


def checkpoint_writer(
    output: Path,
    model: GRUClassifier,
    tokenizer: Tokenizer,
    tok_cfg: TokenizerConfig,
    labels: list[str],
    sections: dict[str, Any],
    task: Task,
    group: Group | None,
    overwrite: bool,
) -> Callable[[dict[str, torch.Tensor], dict[str, Any], TrainerState | None], Path]:
    """write(weights, metrics, trainer state or None) -> the checkpoint's path; only rank 0 writes."""

    def write(weights: dict[str, torch.Tensor], metrics: dict[str, Any], state: TrainerState | None) -> Path:
        model.load_state_dict(weights)
        if group is not None and not group.leader:  # rank 0 writes; the others wait until it has
            group.barrier()
            return output
        # An interrupted run keeps the thresholds of its best epoch (0.5 before the first one).
        decision = task.kept_decision or task.head.decision_section()
        path = save(
            output,
            model=model,
            tokenizer=tokenizer,
            tokenizer_config=tok_cfg,
            labels=labels,
            sections={**sections, **({"decision": decision} if decision is not None else {})},
            metrics=metrics,
            overwrite=overwrite,
            extra=(lambda root: write_trainer_state(root, state)) if state is not None else None,
            with_onnx=state is None,  # an interrupted run's checkpoint is written within a signal's grace period
        )
        if group is not None:
            group.barrier()
        return path

    return write


def interrupted_state(
    model: GRUClassifier,
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
        _clone(model.state_dict()),
        best_state,
        optimizer_state["optimizer"],
        optimizer_state["scheduler"],
        rng,
    )


def end_epoch(
    model: GRUClassifier,
    task: Task,
    loop: LoopState,
    best_state: dict[str, torch.Tensor],
    val_ids: TokenRows,
    val_y: torch.Tensor,
    device: torch.device,
    group: Group | None,
    seconds: float,
    emit: Callable[[Event], None],
    val_grams: TokenRows | None = None,
) -> None:
    """Score the epoch on validation, keep the weights if they are the best yet, report, reset the counters."""
    val_metrics, val_loss, val_score = task.score(_infer(model, val_ids, device, group, val_grams), val_y)
    score = [val_score, -val_loss]
    improved = score > loop.best_score
    if improved:
        loop.best_score, loop.best_epoch, loop.bad_epochs = score, loop.epoch, 0
        best_state.update(_clone(model.state_dict()))
        task.kept_decision = task.head.decision_section()
    else:
        loop.bad_epochs += 1
    done = EpochDone(
        loop.epoch,
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
    loop.epoch, loop.step, loop.loss_sum, loop.seen, loop.tokens, loop.seconds = loop.epoch + 1, 0, 0.0, 0, 0, 0.0
    loop.data_position = 0


def _silent(event: Event) -> None:
    """The event sink of ranks other than 0."""


def _infer(
    model: GRUClassifier, ids: TokenRows, device: torch.device, group: Group | None, grams: TokenRows | None = None
) -> torch.Tensor:
    """Logits of every row (with its character n-grams, for a model that reads them); under torchrun each rank
    runs its share and all ranks get them all, in order."""
    if group is None:
        return infer(model, ids, device, grams=grams)
    mine = list(range(group.rank, len(ids), group.world))
    part = None if grams is None else [grams[i] for i in mine]
    logits = infer(model, [ids[i] for i in mine], device, grams=part) if mine else torch.empty(0)
    out: torch.Tensor | None = None
    for rank, part in enumerate(group.gather(logits)):
        if out is None:
            out = torch.empty(len(ids), part.size(1) if part.dim() == 2 else 0)
        if len(part):
            out[rank :: group.world] = part
    assert out is not None
    return out


def fit(
    runner: torch.nn.Module,
    model: GRUClassifier,
    optimizer: Optimizer,
    loop: LoopState,
    best_state: dict[str, torch.Tensor],
    ids: dict[str, list[list[int]]],
    y: dict[str, torch.Tensor],
    task: Task,
    cfg: TrainConfig,
    device: torch.device,
    emit: Callable[[Event], None],
    stop: StopSignals,
    group: Group | None = None,
    grams: Mapping[str, TokenRows] | None = None,
) -> str:
    """The loop: clipped AdamW steps, a validation pass per epoch, early stopping on the task's metric.
    Updates `loop` and `best_state` in place; returns why it stopped (or "interrupted"). `runner` is the
    model, or its DistributedDataParallel wrapper under torchrun. `grams`: each split's character n-grams,
    for a model that reads them."""
    grams = grams or {}
    lengths = [len(r) for r in ids["train"]]
    train_ids, train_y = ids["train"], y["train"]
    word_dropout = cfg.resolved_word_dropout(task.head.multi_label)
    rank, world = (group.rank, group.world) if group is not None else (0, 1)
    for epoch in range(loop.epoch, cfg.epochs + 1):
        loop.epoch = epoch
        # The batch order depends only on (seed, epoch), so a resumed run sees the same order. Under torchrun
        # each global batch of batch_size x ranks texts is cut into one slice per rank (a last batch with
        # fewer texts than ranks is left out).
        batches = bucket_batches(lengths, cfg.batch_size * world, random.Random(f"{cfg.seed}-{epoch}"))
        if world > 1:
            batches = [b for b in batches if len(b) >= world]
        if cfg.max_steps is not None:
            batches = batches[: max(0, cfg.max_steps - (loop.global_step - loop.step))]
        emit(EpochStarted(epoch, cfg.epochs, len(batches)))
        model.train()
        start = time.perf_counter() - loop.seconds
        for step in range(loop.step, len(batches)):
            whole = batches[step]
            batch = collate(train_ids, whole[rank::world], grams.get("train")).to(device)
            if word_dropout:  # whole words hidden behind [UNK]: the model may not lean on any single one
                hide = (torch.rand(batch.ids.shape, device=device) < word_dropout) & (batch.ids != PAD_ID)
                batch.ids = batch.ids.masked_fill(hide, UNK_ID)
            target = train_y[batch.index].to(device)  # [B] or [B, C]
            logits = runner(*batch.inputs)  # [B, C], or [B, 2C] with the bigram head
            # Under torchrun the loss is normalised over the whole global batch, times the ranks DDP averages
            # over, so N ranks take exactly the step one process takes on the same texts.
            normalizer = task.normalizer(train_y[whole]) / world if world > 1 else None
            loss = task.training_loss(logits, target, model.heads, normalizer)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at epoch {epoch}, step {step + 1}; lower --lr "
                    f"(now {cfg.resolved_lr(task.head.multi_label):g}) or --grad-clip, and check the data"
                )
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()  # clip, update, schedule
            loop.step, loop.global_step = step + 1, loop.global_step + 1
            loop.loss_sum += loss.item() * len(whole)  # rank 0 shows its own estimate of the mean
            loop.seen += len(whole)
            loop.tokens += int(batch.lengths.sum()) if world == 1 else sum(max(1, lengths[i]) for i in whole)
            elapsed = time.perf_counter() - start
            emit(
                StepDone(
                    epoch,
                    step + 1,
                    len(batches),
                    loop.global_step,
                    loop.loss_sum / loop.seen,
                    loop.seen / max(elapsed, 1e-9),
                    optimizer.lr,
                )
            )
            if _stopping(stop, group):
                loop.seconds = elapsed
                return "interrupted"
        seconds = time.perf_counter() - start
        end_epoch(
            model,
            task,
            loop,
            best_state,
            ids["validation"],
            y["validation"],
            device,
            group,
            seconds,
            emit,
            grams.get("validation"),
        )
        if cfg.max_steps is not None and loop.global_step >= cfg.max_steps:
            return f"reached --max-steps {cfg.max_steps}"
        if loop.bad_epochs and loop.bad_epochs >= cfg.patience:  # patience 0: stop at the first worse epoch
            return f"early stop: no better validation {task.metric} for {loop.bad_epochs} epoch(s)"
        if _stopping(stop, group):
            return "interrupted"
    return f"ran all {cfg.epochs} epochs"


def _stopping(stop: StopSignals, group: Group | None) -> bool:
    """Whether to stop for a signal; under torchrun every rank asks at the same points and all agree, so a
    signal that reached one rank first stops them all at the same step."""
    if group is None:
        return stop.signum is not None
    if group.any(stop.signum is not None):
        stop.signum = stop.signum or signal.SIGTERM  # another rank was signalled
        return True
    return False
