"""The training recipe: read data -> train tokenizer -> build model -> fit with early stopping -> save.

Progress is reported through `on_event` callbacks (dataclasses below); this module never prints.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from grutext.batching import Batch, bucket_batches, collate, infer
from grutext.checkpoint import check_output_dir, save
from grutext.config import ModelConfig, TokenizerConfig, TrainConfig, to_dict
from grutext.data import LabelledData, load_labelled, training_splits
from grutext.errors import ConfigError, TrainingError
from grutext.evaluate import classification_metrics, label_indices
from grutext.model import GRUClassifier
from grutext.tokenizer import encode, train_tokenizer


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


# ---------------------------------------------------------------------------------------------- events


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
    val_accuracy: float
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


Event = DataLoaded | TokenizerTrained | ModelBuilt | EpochStarted | StepDone | EpochDone | Finished


@dataclass
class TrainResult:
    path: Path
    metrics: dict[str, Any]
    history: list[EpochDone] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- helpers


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA, then Apple's MPS, then the CPU; asking for a missing accelerator is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for, but Apple's MPS is not available; use --device cpu")
    return torch.device(name)


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


def _targets(batch: Batch, y: Sequence[int]) -> torch.Tensor:
    return torch.tensor([y[i] for i in batch.index], dtype=torch.int64)


def _score(
    model: nn.Module, ids: list[list[int]], y: list[int], labels: list[str], device: torch.device
) -> tuple[dict[str, Any], float]:
    logits = infer(model, ids, device)
    loss = nn.functional.cross_entropy(logits, torch.tensor(y, dtype=torch.int64)).item()
    return classification_metrics(y, logits.argmax(dim=1).tolist(), labels), loss


# ---------------------------------------------------------------------------------------------- train


def train(
    spec: DataSpec,
    tok_cfg: TokenizerConfig,
    model_options: Mapping[str, Any],
    cfg: TrainConfig,
    output: Path,
    *,
    overwrite: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> TrainResult:
    """Train a classifier on `spec` and write the checkpoint to `output`."""
    emit = on_event or (lambda event: None)
    # Fail on bad settings and unwritable outputs before spending any time on data.
    ModelConfig(vocab_size=tok_cfg.vocab_size, num_labels=2, **model_options)
    check_output_dir(output, overwrite)
    device = resolve_device(cfg.device)
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
    )
    data = training_splits(data, cfg.val_fraction, cfg.seed)
    if data.multi_label:
        raise ConfigError(f"{spec.source}: the label column holds lists (multi-label); use a single-label column")
    labels = data.label_names()
    sizes = {name: len(split.texts) for name, split in data.splits.items()}
    emit(
        DataLoaded(
            spec.source,
            data.text_column,
            data.label_column,
            labels,
            sizes,
            data.validation_from,
            data.skipped,
        )
    )

    # ---- tokenizer: trained on the training split only
    start = time.perf_counter()
    tokenizer = train_tokenizer(data.splits["train"].texts, tok_cfg)
    ids = {name: encode(tokenizer, split.texts, tok_cfg) for name, split in data.splits.items()}
    train_ids = ids["train"]
    full_lengths = [
        len(e.ids) for e in tokenizer.encode_batch_fast(data.splits["train"].texts[:2000], add_special_tokens=False)
    ]
    emit(
        TokenizerTrained(
            tok_cfg.kind,
            tokenizer.get_vocab_size(),
            time.perf_counter() - start,
            float(np.mean([len(r) for r in train_ids])),
            float(np.mean([n > tok_cfg.max_length for n in full_lengths])),
        )
    )

    # ---- model
    model_cfg = ModelConfig(vocab_size=tokenizer.get_vocab_size(), num_labels=len(labels), **model_options)
    model = GRUClassifier(model_cfg).to(device)
    emit(ModelBuilt(model.num_parameters(), str(device)))
    y = {name: label_indices(split, labels) for name, split in data.splits.items()}

    history, best_state, best_epoch, stopped = fit(
        model, train_ids, y["train"], ids["validation"], y["validation"], labels, cfg, device, emit
    )
    model.load_state_dict(best_state)

    # ---- final scores of the kept model; the test split is only reported, never used to choose
    val_metrics, _ = _score(model, ids["validation"], y["validation"], labels, device)
    metrics: dict[str, Any] = {
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped": stopped,
        "train_seconds": round(sum(h.seconds for h in history), 2),
        "validation": val_metrics,
    }
    if "test" in ids:
        metrics["test"], _ = _score(model, ids["test"], y["test"], labels, device)
    metrics["history"] = [
        {k: getattr(h, k) for k in ("epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "seconds")}
        for h in history
    ]
    sections = {"train": to_dict(cfg), "data": _data_section(spec, data, sizes)}
    path = save(
        output,
        model=model.cpu(),
        tokenizer=tokenizer,
        tokenizer_config=tok_cfg,
        labels=labels,
        sections=sections,
        metrics=metrics,
        overwrite=overwrite,
    )
    emit(Finished(path, best_epoch, stopped, metrics))
    return TrainResult(path, metrics, history)


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


def fit(
    model: GRUClassifier,
    train_ids: list[list[int]],
    train_y: list[int],
    val_ids: list[list[int]],
    val_y: list[int],
    labels: list[str],
    cfg: TrainConfig,
    device: torch.device,
    emit: Callable[[Event], None],
) -> tuple[list[EpochDone], dict[str, torch.Tensor], int, str]:
    """The loop: AdamW, warmup + linear decay, clipping, early stopping on validation accuracy.
    Returns the history, the best weights, the best epoch and why training stopped."""
    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    # The fused kernel does the whole update in one pass over the weights: measurably faster on CPU.
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, cfg.warmup))
    lengths = [len(r) for r in train_ids]

    history: list[EpochDone] = []
    best: tuple[float, float] = (-1.0, math.inf)  # (accuracy, -loss) compared lexicographically
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_epoch, bad_epochs, global_step = 0, 0, 0
    stopped = f"ran all {cfg.epochs} epochs"
    for epoch in range(1, cfg.epochs + 1):
        # The batch order depends only on (seed, epoch), so a resumed run sees the same order.
        batches = bucket_batches(lengths, cfg.batch_size, random.Random(f"{cfg.seed}-{epoch}"))
        if cfg.max_steps is not None:
            batches = batches[: max(0, cfg.max_steps - global_step)]
        emit(EpochStarted(epoch, cfg.epochs, len(batches)))
        model.train()
        start = time.perf_counter()
        loss_sum, seen, tokens = 0.0, 0, 0
        for step, index in enumerate(batches, start=1):
            batch = collate(train_ids, index).to(device)
            target = _targets(batch, train_y).to(device)
            logits = model(batch.ids, batch.lengths)  # [B, C]
            loss = nn.functional.cross_entropy(logits, target)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at epoch {epoch}, step {step}; lower --lr (now {cfg.lr:g}) "
                    "or --grad-clip, and check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            global_step += 1
            loss_sum += loss.item() * len(index)
            seen += len(index)
            tokens += int(batch.lengths.sum())
            elapsed = time.perf_counter() - start
            emit(
                StepDone(
                    epoch,
                    step,
                    len(batches),
                    global_step,
                    loss_sum / seen,
                    seen / max(elapsed, 1e-9),
                    float(scheduler.get_last_lr()[0]),
                )
            )
        seconds = time.perf_counter() - start
        val_metrics, val_loss = _score(model, val_ids, val_y, labels, device)
        score = (val_metrics["accuracy"], -val_loss)
        improved = score > best
        if improved:
            best, best_epoch, bad_epochs = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        history.append(
            EpochDone(
                epoch,
                loss_sum / max(seen, 1),
                val_loss,
                val_metrics["accuracy"],
                val_metrics["macro_f1"],
                improved,
                seconds,
                seen / max(seconds, 1e-9),
                tokens / max(seconds, 1e-9),
            )
        )
        emit(history[-1])
        if cfg.max_steps is not None and global_step >= cfg.max_steps:
            stopped = f"reached --max-steps {cfg.max_steps}"
            break
        if bad_epochs > cfg.patience:
            stopped = f"early stop: no better validation accuracy for {bad_epochs} epochs"
            break
    return history, best_state, best_epoch, stopped
