"""A classifier run's data, read into memory (`read_memory`) or streamed (grutext.stream_data.read_stream), and
the training batches the loop takes from texts held in memory (`MemoryBatches`, a grutext.loop.BatchSource).

Each epoch is length-bucketed batches of token ids in an order that depends only on (seed, epoch), so a
resumed run sees the same order. Under torchrun each global batch of batch_size x ranks texts is cut into one
slice per rank (a last batch with fewer texts than ranks is left out). A stream's batches are in
grutext.stream_data, a language model's in grutext.pretraining.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from grutext.batching import TokenRows, bucket_batches, collate, row_lengths
from grutext.config import ModelConfig, TokenizerConfig, TrainConfig
from grutext.data import LabelledData, Split, load_labelled, training_splits
from grutext.events import DataLoaded, Event, UnknownLabels
from grutext.loop import BatchSource, LoopState, TrainBatch
from grutext.ragged import Rows
from grutext.runtime import Runtime, release_memory
from grutext.settings import DataSpec
from grutext.task import Task, infer_all, make_task
from grutext.tokenizer import encode_inputs, truncated_fraction


@dataclass
class Encoded:
    """A classifier run's data as token ids, ready for the loop."""

    source: BatchSource
    steps_per_epoch: int  # planned steps a pass takes (a stream's may be an estimate)
    validation: tuple[TokenRows, TokenRows | None, torch.Tensor]  # ids, character n-grams, targets
    score_test: Callable[[torch.nn.Module], dict[str, Any] | None]  # the kept model's test scores, if any
    mean_tokens: float  # per training text (of a sample)
    truncated: float  # share of training texts longer than max_length (of a sample)
    train_ids: TokenRows  # (a sample of) the training texts' ids, for the vectors' token coverage


@dataclass
class RunData:
    """What a classifier run reads, whether held in memory or streamed: the recipe needs no more of either."""

    labels: list[str]
    multi_label: bool
    task: Task
    tokenizer_texts: list[str]  # what the tokenizer (and the vectors' rare words) learn from
    section: dict[str, Any]  # config.json's "data"
    fingerprint: str  # of the training and validation rows, so --resume refuses data that changed ("": not kept)
    encode: Callable[[Tokenizer, TokenizerConfig, ModelConfig], Encoded]


def read_memory(
    spec: DataSpec,
    cfg: TrainConfig,
    rt: Runtime,
    emit: Callable[[Event], None],
    first: list[str] | None = None,
    extra: Sequence[tuple[str, list[str]]] = (),
) -> RunData:
    """Read and clean every split into memory, carve validation out of train where there is none, and say so.
    `first`: labels that keep their place first (a classifier the run goes on training), the data's after them;
    `extra`: (text, labels) rows added to the training split after the carve, so validation is the same."""
    data = load_labelled(spec.source, **spec.read_options())
    data = training_splits(data, cfg.val_fraction, cfg.seed)
    if extra:
        train = data.splits["train"]
        data.splits["train"] = Split(
            [*train.texts, *(text for text, _ in extra)], [*train.labels, *(row for _, row in extra)], train.origin
        )
    labels = [*(first or []), *(name for name in data.label_names() if name not in set(first or []))]
    task = make_task(data, labels, cfg)
    sizes = {name: len(split.texts) for name, split in data.splits.items()}
    emit(
        DataLoaded(spec.source, data.text_column, data.label_column, labels, sizes, data.validation_from, data.skipped)
    )
    if data.unseen_in_validation:
        emit(UnknownLabels("validation", data.splits["validation"].origin, data.unseen_in_validation))
    section = {
        "source": spec.source,
        "config_name": spec.config_name,
        "revision": spec.revision,
        "text_column": data.text_column,
        "label_column": data.label_column,
        "multi_label": data.multi_label,
        "sizes": sizes,
        "validation_from": data.validation_from,
        "skipped_rows": data.skipped,
        **({"pseudo_labelled": len(extra)} if extra else {}),
    }

    def encode(tokenizer: Tokenizer, tok_cfg: TokenizerConfig, model_cfg: ModelConfig) -> Encoded:
        ids: dict[str, Rows] = {}
        grams: dict[str, TokenRows] = {}  # each split's character n-grams, for a model that reads them
        for name in ("train", "validation"):  # test is encoded when it is scored, a chunk at a time
            ids[name], split_grams = encode_inputs(tokenizer, data.splits[name].texts, tok_cfg, model_cfg)
            if split_grams is not None:
                grams[name] = split_grams
            release_memory()
        y = {name: task.head.targets(data.splits[name]) for name in ("train", "validation")}
        source = MemoryBatches(
            ids["train"], y["train"], cfg.batch_size, cfg.seed, rt.rank, rt.world, grams.get("train"),
            task.normalizer, cfg.max_steps,
        )  # fmt: skip

        def score_test(model: torch.nn.Module) -> dict[str, Any] | None:
            if "test" not in data.splits:  # thresholds come from validation, never from test
                return None
            test = data.splits["test"]
            parts = []
            for k in range(0, len(test.texts), TEST_CHUNK):  # never the whole split's ids and n-grams at once
                chunk_ids, chunk_grams = encode_inputs(tokenizer, test.texts[k : k + TEST_CHUNK], tok_cfg, model_cfg)
                parts.append(infer_all(model, chunk_ids, rt.device, rt.group, chunk_grams))
                del chunk_ids, chunk_grams
                release_memory()
            logits = torch.cat(parts) if parts else torch.empty(0, len(labels))
            metrics = task.head.score_rows(task.head.probabilities(logits), test.labels, test.origin)
            if "unknown_labels" in metrics:
                emit(UnknownLabels("test", test.origin, metrics["unknown_labels"]))
            return metrics

        return Encoded(
            source,
            math.ceil(len(ids["train"]) / (cfg.batch_size * rt.world)),
            (ids["validation"], grams.get("validation"), y["validation"]),
            score_test,
            float(np.mean(ids["train"].lengths())),
            truncated_fraction(tokenizer, data.splits["train"].texts[:2000], tok_cfg),
            ids["train"],
        )

    return RunData(labels, data.multi_label, task, data.splits["train"].texts, section, fingerprint(data), encode)


TEST_CHUNK = 4096  # test texts encoded and scored at a time


def fingerprint(data: LabelledData) -> str:
    """A hash of the training and validation rows, so --resume refuses data that changed."""
    digest = hashlib.sha256()
    for name in ("train", "validation"):
        split = data.splits[name]
        for text, labels in zip(split.texts, split.labels, strict=True):
            digest.update(text.encode("utf-8", "surrogatepass") + b"\x00" + "\x01".join(labels).encode() + b"\x02")
        digest.update(b"\x03")
    return digest.hexdigest()


class Bucketed:
    """Rows of token ids in length-bucketed batches, in an order that depends only on (seed, epoch), so that a
    resumed run sees the same order; under torchrun a global batch is batch_size x ranks rows (a last batch with
    fewer rows than ranks is left out). What the in-memory classifier batches and a language model's share."""

    def __init__(
        self, ids: TokenRows, batch_size: int, seed: int, world: int = 1, max_steps: int | None = None
    ) -> None:
        """`max_steps` only shortens the epoch's announced length (the loop stops at it)."""
        self.ids, self.lengths = ids, row_lengths(ids)
        self.batch_size, self.seed, self.world, self.max_steps = batch_size, seed, world, max_steps
        self._plan: tuple[int, list[list[int]]] | None = None

    def plan(self, epoch: int) -> list[list[int]]:
        """The epoch's global batches (indices), cached for the epoch."""
        if self._plan is None or self._plan[0] != epoch:
            batches = bucket_batches(self.lengths, self.batch_size * self.world, random.Random(f"{self.seed}-{epoch}"))
            if self.world > 1:
                batches = [b for b in batches if len(b) >= self.world]
            self._plan = (epoch, batches)
        return self._plan[1]

    def epoch_steps(self, loop: LoopState) -> int:
        steps = len(self.plan(loop.epoch))
        if self.max_steps is not None:
            steps = min(steps, max(0, self.max_steps - (loop.global_step - loop.step)))
        return steps


class MemoryBatches(Bucketed):
    """A classifier's training texts held in memory, as the loop's BatchSource."""

    def __init__(
        self,
        ids: TokenRows,
        target: torch.Tensor,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        grams: TokenRows | None = None,
        normalizer: Callable[[torch.Tensor], float] | None = None,
        max_steps: int | None = None,
    ) -> None:
        """`target`: one row per text; `normalizer(targets of a global batch)`: what that batch's summed loss
        divides by under torchrun (so N ranks take exactly the step one process takes)."""
        super().__init__(ids, batch_size, seed, world, max_steps)
        self.target, self.grams, self.rank, self.normalizer = target, grams, rank, normalizer

    def batches(self, loop: LoopState) -> Iterator[TrainBatch]:
        plan = self.plan(loop.epoch)
        for step in range(loop.step, len(plan)):
            whole = plan[step]
            mine = whole[self.rank :: self.world]
            inputs = collate(self.ids, mine, self.grams)
            if self.world == 1:
                yield TrainBatch(inputs, self.target[inputs.index], len(whole), int(inputs.lengths.sum()))
                continue
            # Under torchrun the loss is normalised over the whole global batch, times the ranks DDP averages
            # over, so N ranks take exactly the step one process takes on the same texts.
            assert self.normalizer is not None
            normalizer = self.normalizer(self.target[whole]) / self.world
            tokens = sum(max(1, self.lengths[i]) for i in whole)
            yield TrainBatch(inputs, self.target[inputs.index], len(whole), tokens, normalizer)
