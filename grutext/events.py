"""What a run reports while it runs: the library's progress vocabulary, one dataclass per kind of event.

Every kind of run (a classifier in memory or streamed, a language model) emits these through its `on_event`
callback; the command line renders them (a progress bar on a terminal, log lines otherwise), a library caller
may ignore them. Nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
class CorpusRead:
    """A language model's unlabelled texts, read: how many, and how many are held out for perplexity."""

    sources: list[str]
    read: int  # texts read, duplicates and empty ones included
    texts: int  # distinct texts trained on
    held_out: int


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
    backend: str  # "fast backend, native kernel" or "..., TorchScript scan" (the CPU paths), or "reference backend"
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
    metric: str  # the early-stopping metric (a language model's: perplexity, lower is better)
    val_score: float
    val_macro_f1: float | None  # None for a language model
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


@dataclass
class StageStarted:
    """A stage of `train --unlabeled` begins: the language model, or a classifier round (round 0 starts from the
    language model alone; a later round adds the texts the last one is surest of)."""

    stage: str  # "language model", or "round N of M"
    reused: bool  # finished by an earlier, interrupted run: read, not trained again
    pseudo_labelled: int = 0


@dataclass
class RoundKept:
    """`train --unlabeled` copied the kept round (semisupervised.kept_round) to its output."""

    path: Path
    kept: int
    rounds: list[dict[str, Any]]  # each round's number, pseudo_labelled, validation (and test) score


Event = (
    DiscardingResumable
    | DataLoaded
    | CorpusRead
    | UnknownLabels
    | TokenizerTrained
    | VectorsLoaded
    | ModelBuilt
    | EpochStarted
    | StepDone
    | EpochDone
    | Finished
    | StageStarted
    | RoundKept
)


@dataclass
class TrainResult:
    path: Path
    metrics: dict[str, Any]
    history: list[EpochDone] = field(default_factory=list)


def silent(event: Event) -> None:
    """The event sink of ranks other than 0, and of callers that want none."""
