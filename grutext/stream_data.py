"""A classifier's data read as a stream (`grutext train DATASET --streaming`): memory stays flat however large
the data.

One scan of the training stream first gathers what the model needs before it is built: the tokenizer's sample
(the first --tokenizer-sample texts), the validation texts (the source's validation split, or the hash-chosen
held-out share of train, at most --max-validation of them) and, unless --labels names them, the label set and
counts (which decide the early-stopping metric and class weights as in memory). Then each epoch streams train
again: texts are encoded as they arrive, shuffled through a buffer of --shuffle-buffer texts, sorted by length
within it and cut into batches; an epoch is a pass, or --steps-per-epoch steps. Under torchrun rank 0 does the
scan and broadcasts its results; each rank then reads its own share of every pass.

Resume continues from the stream position (the records each rank had read); the texts waiting in the shuffle
buffer at the interruption are not seen again in that epoch, so a resumed streaming run is close to, not
bitwise equal to, an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tokenizers import Tokenizer

from grutext.batching import collate
from grutext.config import ModelConfig, TokenizerConfig, TrainConfig
from grutext.data import sort_labels
from grutext.distributed import Group
from grutext.errors import ConfigError, DataError
from grutext.events import DataLoaded, Event, UnknownLabels
from grutext.loop import LoopState, TrainBatch
from grutext.runtime import Runtime
from grutext.settings import DataSpec
from grutext.sources import Encoded, RunData
from grutext.streaming import Record, StreamSource, held_out, open_stream
from grutext.task import Task, infer_all, task_from_counts
from grutext.tokenizer import encode

ENCODE_CHUNK = 4096  # texts encoded at a time
MAX_TEST = 200_000  # test texts scored at the end (from the start of the test split)
Ids = npt.NDArray[np.int32]


@dataclasses.dataclass
class Scan:
    """What the first scan of the training stream found."""

    sample: list[str]
    validation: list[Record]
    counts: Counter[str]
    rows: int  # training records seen (held-out ones excluded), or -1 when the scan stopped early
    multi_label: bool
    bytes_per_record: float


def scan(source: StreamSource, cfg: TrainConfig, has_validation: bool) -> Scan:
    """Tokenizer sample, validation texts and (without --labels) label counts, in one pass at most."""
    sample: list[str] = []
    validation: list[Record] = []
    counts: Counter[str] = Counter()
    rows, multi = 0, source.label_sep is not None
    full = cfg.labels is None
    for _, record in source.records("train"):
        if record is None:
            continue
        multi = multi or len(record.labels) > 1
        if not has_validation and held_out(record.text, cfg.val_fraction):
            if len(validation) < cfg.max_validation:
                validation.append(record)
            continue
        rows += 1
        counts.update(record.labels)
        if len(sample) < cfg.tokenizer_sample:
            sample.append(record.text)
        elif not full and (has_validation or len(validation) >= cfg.max_validation):
            break
    per_record = source.bytes_read / max(rows + len(validation), 1)
    if has_validation:
        for _, record in source.records("validation"):
            if record is not None:
                multi = multi or len(record.labels) > 1
                validation.append(record)
                if len(validation) >= cfg.max_validation:
                    break
    if not sample:
        raise DataError(f"{source.name}: the training stream holds no usable records")
    if not validation:
        raise DataError(
            f"{source.name}: no validation texts (no validation split, and none of the {rows} training texts "
            f"fell in the held-out {cfg.val_fraction:.0%}); raise --val-fraction or add a validation split"
        )
    return Scan(sample, validation, counts, rows if full else -1, multi, per_record)


def read_stream(
    spec: DataSpec, cfg: TrainConfig, rt: Runtime, emit: Callable[[Event], None], first: list[str] | None = None
) -> RunData:
    """Open the stream and scan it once (rank 0, broadcast under torchrun): the label set and counts, the
    tokenizer's sample and the validation texts, kept in memory until they are encoded."""
    source = open_stream(spec)
    if "train" not in source.splits:
        raise DataError(f"{spec.source}: no 'train' split to stream (splits: {', '.join(source.splits)})")
    source.choose_columns("train")
    has_validation = "validation" in source.splits
    found: Scan | None = scan(source, cfg, has_validation) if rt.leader else None
    if rt.group is not None:
        found = rt.group.broadcast(found)
    assert found is not None
    labels = [x.strip() for x in cfg.labels.split(",") if x.strip()] if cfg.labels else sort_labels(set(found.counts))
    labels = [*(first or []), *(name for name in labels if name not in set(first or []))]
    if len(labels) < 2 and not found.multi_label:
        raise DataError(f"{spec.source}: the training stream has a single class ({labels}); a classifier needs two")
    known = set(labels)
    for record in found.validation:
        if not known.issuperset(record.labels):
            unknown = sorted(set(record.labels) - known)
            raise DataError(f"{spec.source}: validation label {unknown[0]!r} is not in --labels ({', '.join(labels)})")
    # Every record a stream yields has a label (label-less rows are bad rows), so multi-label predicts one at least.
    task = task_from_counts(labels, found.counts, max(found.rows, 1), found.multi_label, True, cfg)
    sizes = {"train": found.rows} if found.rows >= 0 else {}  # not counted when --labels spared the full scan
    sizes["validation"] = len(found.validation)
    held = "validation split" if has_validation else f"held-out {cfg.val_fraction:.0%} of train by text hash"
    emit(DataLoaded(spec.source, source.text_column or "", source.label_column or "", labels, sizes, held, {}))
    section = {
        "source": spec.source,
        "config_name": spec.config_name,
        "revision": spec.revision,
        "text_column": source.text_column,
        "label_column": source.label_column,
        "multi_label": found.multi_label,
        "sizes": sizes,
        "validation_from": held,
        "streaming": True,
    }
    index = {name: i for i, name in enumerate(labels)}

    def encode_stream(tokenizer: Tokenizer, tok_cfg: TokenizerConfig, model_cfg: ModelConfig) -> Encoded:
        assert found is not None
        sample_ids = encode(tokenizer, found.sample[:2000], tok_cfg)
        val_ids = _encode_compact(tokenizer, [r.text for r in found.validation], tok_cfg)
        val_y = _targets([r.labels for r in found.validation], index, found.multi_label)
        # The texts are no longer needed: only the ids stay in memory (int32 arrays: a list of Python ints costs
        # 9x as much, 150 MB for 20,000 texts of 200 tokens).
        found.sample.clear()
        found.validation.clear()
        steps = cfg.steps_per_epoch or _estimated_steps(source, found, cfg, rt.world)
        batches = StreamBatches(
            source, tokenizer, tok_cfg, index, found.multi_label, cfg, rt, has_validation, steps, task
        )

        def score_test(model: torch.nn.Module) -> dict[str, Any] | None:
            if "test" not in source.splits:
                return None
            metrics = _score_test(model, source, tokenizer, tok_cfg, task, found.multi_label, rt.device, rt.group)
            if "unknown_labels" in metrics:
                emit(UnknownLabels("test", f"{source.name} [test]", metrics["unknown_labels"]))
            return metrics

        return Encoded(
            batches,
            steps,
            (val_ids, None, val_y),
            score_test,
            float(np.mean([len(r) for r in sample_ids])),
            sum(len(r) >= tok_cfg.max_length for r in sample_ids) / max(len(sample_ids), 1),
            sample_ids,
        )

    return RunData(labels, found.multi_label, task, found.sample, section, "", encode_stream)


class StreamBatches:
    """This rank's batches, read pass after pass from the stream (a grutext.loop.BatchSource). An epoch is a
    pass, or --steps-per-epoch steps running on into the next pass; `loop.data_pass` and `loop.data_position`
    (records read in the pass in progress) follow the reading, so a resumed run goes on where it stopped."""

    def __init__(
        self,
        source: StreamSource,
        tokenizer: Tokenizer,
        tok_cfg: TokenizerConfig,
        labels: dict[str, int],
        multi: bool,
        cfg: TrainConfig,
        rt: Runtime,
        has_validation: bool,
        steps: int,
        task: Task,
    ) -> None:
        self.source, self.tokenizer, self.tok_cfg, self.labels, self.multi = source, tokenizer, tok_cfg, labels, multi
        self.cfg, self.rt, self.has_validation, self.steps, self.task = cfg, rt, has_validation, steps, task
        self._pass: Iterator[tuple[list[Ids], torch.Tensor]] | None = None

    def epoch_steps(self, loop: LoopState) -> int:
        return self.steps

    def batches(self, loop: LoopState) -> Iterator[TrainBatch]:
        per_epoch, group, world = self.cfg.steps_per_epoch, self.rt.group, self.rt.world
        while per_epoch is None or loop.step < per_epoch:
            if self._pass is None:  # a resumed run goes on in the pass it stopped in, after what it had read
                self._pass = self._read_pass(loop, skip=loop.data_position)
            ids, target = next(self._pass, ([], torch.empty(0)))
            ended = not ids
            if per_epoch is None and group is not None:  # every rank ends the pass at the same step
                ended = group.any(ended)
            if ended:
                loop.data_pass, loop.data_position, self._pass = loop.data_pass + 1, 0, None
                if per_epoch is None:
                    return
                continue  # with --steps-per-epoch an epoch runs on into the next pass
            inputs = collate(ids, range(len(ids)))
            tokens = int(inputs.lengths.sum()) * world
            yield TrainBatch(inputs, target, len(ids) * world, tokens, self.task.normalizer(target))

    def _read_pass(self, loop: LoopState, skip: int) -> Iterator[tuple[list[Ids], torch.Tensor]]:
        """One pass of this rank's share, after `skip` records: (ids per text, targets) per batch."""
        cfg, rank, world = self.cfg, self.rt.rank, self.rt.world
        rng = random.Random(f"{cfg.seed}-{loop.data_pass}-{rank}")
        buffer: list[tuple[Ids, list[str]]] = []
        pending: list[Record] = []

        def flush() -> Iterator[tuple[list[Ids], torch.Tensor]]:
            rng.shuffle(buffer)
            chunk = cfg.batch_size * 50  # sort chunks of 50 batches by length: little padding, still shuffled
            groups: list[list[tuple[Ids, list[str]]]] = []
            for start in range(0, len(buffer), chunk):
                part = sorted(buffer[start : start + chunk], key=lambda item: len(item[0]))
                groups.extend(part[k : k + cfg.batch_size] for k in range(0, len(part), cfg.batch_size))
            rng.shuffle(groups)
            buffer.clear()
            for group in groups:
                yield [ids for ids, _ in group], _targets([names for _, names in group], self.labels, self.multi)

        def encode_pending() -> None:
            ids = _encode_compact(self.tokenizer, [r.text for r in pending], self.tok_cfg)
            buffer.extend((row, r.labels) for row, r in zip(ids, pending, strict=True))
            pending.clear()

        for i, record in self.source.records("train", rank, world):
            loop.data_position = i + 1
            if i < skip or record is None:
                continue
            if not self.has_validation and held_out(record.text, cfg.val_fraction):
                continue
            _check_arity(record, self.multi, f"{self.source.name}, record {i + 1}")
            if any(name not in self.labels for name in record.labels):
                unknown = sorted(n for n in record.labels if n not in self.labels)
                raise DataError(
                    f"{self.source.name}, record {i + 1}: label {unknown[0]!r} is not in --labels "
                    f"({', '.join(self.labels)})"
                )
            pending.append(record)
            if len(pending) >= ENCODE_CHUNK:
                encode_pending()
            if len(buffer) >= cfg.shuffle_buffer:
                yield from flush()
        encode_pending()
        yield from flush()


def _encode_compact(tokenizer: Tokenizer, texts: list[str], tok_cfg: TokenizerConfig) -> list[Ids]:
    """encode() as int32 arrays, ENCODE_CHUNK texts at a time: what streaming keeps in memory."""
    return [
        np.asarray(row, dtype=np.int32)
        for k in range(0, len(texts), ENCODE_CHUNK)
        for row in encode(tokenizer, texts[k : k + ENCODE_CHUNK], tok_cfg)
    ]


def _check_arity(record: Record, multi: bool, where: str) -> None:
    """A row with several labels where the task is single-label (the scan stopped before seeing any)."""
    if not multi and len(record.labels) != 1:
        raise DataError(
            f"{where}: {len(record.labels)} labels in a stream the scan took for single-label; for multi-label "
            "data let the scan read all labels (drop --labels), or write labels as lists"
        )


def _targets(rows: list[list[str]], labels: dict[str, int], multi: bool) -> torch.Tensor:
    if not multi:
        return torch.tensor([labels[names[0]] for names in rows], dtype=torch.int64)
    out = torch.zeros(len(rows), len(labels))
    for i, names in enumerate(rows):
        out[i, [labels[n] for n in names]] = 1.0
    return out


def _estimated_steps(source: StreamSource, found: Scan, cfg: TrainConfig, world: int) -> int:
    """Steps a pass takes: counted by the scan, or estimated from the file sizes; needs --steps-per-epoch
    where neither is known (a hub stream without --labels is counted)."""
    per_step = cfg.batch_size * world
    if found.rows >= 0:
        return max(1, math.ceil(found.rows / per_step))
    size = source.size("train")
    if size is not None and found.bytes_per_record > 0:
        share = 1 - (0 if "validation" in source.splits else cfg.val_fraction)
        return max(1, math.ceil(size / found.bytes_per_record * share / per_step))
    raise ConfigError(
        f"{source.name}: the length of a pass is unknown (a hub stream with --labels); pass --steps-per-epoch N"
    )


def _score_test(
    model: torch.nn.Module,
    source: StreamSource,
    tokenizer: Tokenizer,
    tok_cfg: TokenizerConfig,
    task: Task,
    multi: bool,
    device: torch.device,
    group: Group | None,
) -> dict[str, Any]:
    """The kept model's scores on the start of the test split (at most MAX_TEST texts), read and scored
    ENCODE_CHUNK texts at a time so that memory stays flat (the label names stay: a few bytes a text)."""
    records: list[Record] = []
    probs: list[torch.Tensor] = []
    rows: list[list[str]] = []

    def score_chunk() -> None:
        if records:
            ids = _encode_compact(tokenizer, [r.text for r in records], tok_cfg)
            probs.append(task.head.probabilities(infer_all(model, ids, device, group)))
            rows.extend(r.labels for r in records)
            records.clear()

    for i, record in source.records("test"):
        if record is not None:
            _check_arity(record, multi, f"{source.name} [test], record {i + 1}")
            records.append(record)
        if i + 1 >= MAX_TEST:
            break
        if len(records) >= ENCODE_CHUNK:
            score_chunk()
    score_chunk()
    if not probs:
        raise DataError(f"{source.name}: the test split holds no usable records")
    return task.head.score_rows(torch.cat(probs), rows, f"{source.name} [test]")
