"""The classifier's task: loss, scores and early-stopping metric of a label set (grutext.head says how a single-
or multi-label head turns logits into each), and the objective the training loop trains it by."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from grutext.batching import TokenRows, infer
from grutext.calibration import ece, fit_temperature, nll, temper
from grutext.config import TrainConfig
from grutext.data import LabelledData
from grutext.decision import Decision
from grutext.distributed import Group
from grutext.errors import ConfigError
from grutext.head import Head, make_head
from grutext.loop import TrainBatch, Validation
from grutext.tokenizer import PAD_ID, UNK_ID

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


class ClassifierObjective:
    """The loop's objective for a classifier: each head's loss on a training batch (whole words hidden behind
    [UNK] first), and the task's metric on the validation rows."""

    def __init__(
        self,
        task: Task,
        model: torch.nn.Module,
        heads: int,
        word_dropout: float,
        validation: tuple[TokenRows, TokenRows | None, torch.Tensor],
        device: torch.device,
        group: Group | None,
        freeze_steps: int = 0,
    ) -> None:
        self.task, self.model, self.heads, self.word_dropout = task, model, heads, word_dropout
        self.val_ids, self.val_grams, self.val_y = validation
        self.device, self.group = device, group
        self.metric = task.metric
        self.freeze_steps = freeze_steps

    def loss(self, runner: torch.nn.Module, batch: TrainBatch, device: torch.device) -> torch.Tensor:
        self.model.frozen = batch.step < self.freeze_steps  # type: ignore[assignment]
        inputs = batch.inputs.to(device)
        if self.word_dropout:  # whole words hidden behind [UNK]: the model may not lean on any single one
            hide = (torch.rand(inputs.ids.shape, device=device) < self.word_dropout) & (inputs.ids != PAD_ID)
            inputs.ids = inputs.ids.masked_fill(hide, UNK_ID)
        target = batch.target.to(device)  # [B] or [B, C]
        logits = runner(*inputs.inputs)  # [B, C], or [B, 2C] with the bigram head
        return self.task.training_loss(logits, target, self.heads, batch.normalizer)

    def validate(self) -> Validation:
        logits = infer_all(self.model, self.val_ids, self.device, self.group, self.val_grams)
        metrics, loss, score = self.task.score(logits, self.val_y)
        return Validation(loss, self.task.metric, score, [score, -loss], metrics["macro_f1"])

    def keep(self) -> None:
        self.task.kept_decision = self.task.head.decision_section()

    def calibrate(self) -> dict[str, Any]:
        """Fit the head's temperature on the validation rows (grutext.calibration); what it did, for config.json."""
        logits = infer_all(self.model, self.val_ids, self.device, self.group, self.val_grams)
        self.task.head.temperature = 1.0
        raw = self.task.head.probabilities(logits).numpy()
        multi, target = self.task.head.multi_label, self.val_y.numpy()
        temperature = fit_temperature(raw, target, multi)
        tempered = temper(raw, temperature, multi)
        self.task.head.temperature = temperature
        return {
            "temperature": round(temperature, 4),
            "validation": {
                "ece_before": round(ece(raw, target, multi), 4),
                "ece_after": round(ece(tempered, target, multi), 4),
                "nll_before": round(nll(raw, target, multi), 4),
                "nll_after": round(nll(tempered, target, multi), 4),
            },
        }

    def final(self) -> dict[str, Any]:
        """The kept model's validation metrics, a multi-label head's thresholds tuned for it (per label if asked)."""
        logits = infer_all(self.model, self.val_ids, self.device, self.group, self.val_grams)
        metrics, _, _ = self.task.score(logits, self.val_y, self.task.per_label)
        self.keep()
        return metrics


def infer_all(
    model: torch.nn.Module, ids: TokenRows, device: torch.device, group: Group | None, grams: TokenRows | None = None
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
