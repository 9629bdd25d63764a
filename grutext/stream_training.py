"""Training on a stream (`grutext train DATASET --streaming`): memory stays flat however large the data.

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
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tokenizers import Tokenizer

from grutext.backend import choose, make_optimizer, prepare, resolve_device, torch_threads
from grutext.batching import collate
from grutext.checkpoint import check_output_dir, read_trainer_state
from grutext.config import DataShape, ModelConfig, TokenizerConfig, TrainConfig, to_dict
from grutext.data import sort_labels
from grutext.distributed import Group
from grutext.errors import ConfigError, DataError, Interrupted
from grutext.model import GRUClassifier
from grutext.pretrained import pretrained_embeddings
from grutext.streaming import Record, StreamSource, held_out, open_stream
from grutext.tokenizer import PAD_ID, UNK_ID, configure_truncation, encode, train_tokenizer
from grutext.training import (
    DataLoaded,
    DataSpec,
    EpochDone,
    EpochStarted,
    Event,
    Finished,
    LoopState,
    ModelBuilt,
    StepDone,
    StopSignals,
    Task,
    TokenizerTrained,
    TrainResult,
    UnknownLabels,
    VectorsLoaded,
    _clone,
    _infer,
    _silent,
    _stopping,
    checkpoint_writer,
    end_epoch,
    interrupted_state,
    seed_everything,
    task_from_counts,
)

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


def _batches(
    source: StreamSource,
    tokenizer: Tokenizer,
    tok_cfg: TokenizerConfig,
    labels: dict[str, int],
    multi: bool,
    cfg: TrainConfig,
    pass_number: int,
    skip: int,
    rank: int,
    world: int,
    has_validation: bool,
    position: list[int],
) -> Iterator[tuple[list[Ids], torch.Tensor]]:
    """This rank's batches of one pass: (ids per text, targets). `position[0]` follows the records read."""
    rng = random.Random(f"{cfg.seed}-{pass_number}-{rank}")
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
            yield [ids for ids, _ in group], _targets([names for _, names in group], labels, multi)

    def encode_pending() -> None:
        ids = _encode_compact(tokenizer, [r.text for r in pending], tok_cfg)
        buffer.extend((row, r.labels) for row, r in zip(ids, pending, strict=True))
        pending.clear()

    for i, record in source.records("train", rank, world):
        position[0] = i + 1
        if i < skip or record is None:
            continue
        if not has_validation and held_out(record.text, cfg.val_fraction):
            continue
        _check_arity(record, multi, f"{source.name}, record {i + 1}")
        if any(name not in labels for name in record.labels):
            unknown = sorted(n for n in record.labels if n not in labels)
            raise DataError(
                f"{source.name}, record {i + 1}: label {unknown[0]!r} is not in --labels ({', '.join(labels)})"
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


def train_streaming(
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
    """Train on `spec` read as a stream (see the module docstring) and write the checkpoint to `output`."""
    emit = on_event or _silent
    trainer_state = read_trainer_state(output) if resume else None
    if not resume:
        check_output_dir(output, overwrite)
    device = resolve_device(cfg.device)
    group = Group.from_env(device.type)
    if group is not None and not group.leader:
        emit = _silent
    rank, world = (group.rank, group.world) if group is not None else (0, 1)
    backend = choose(device, "reference" if group is not None and cfg.backend == "auto" else cfg.backend)
    seed_everything(cfg.seed)

    source = open_stream(
        spec.source,
        text_column=spec.text_column,
        label_column=spec.label_column,
        config_name=spec.config_name,
        revision=spec.revision,
        encoding=spec.encoding,
        label_sep=spec.label_sep,
        on_bad_row=spec.on_bad_row,
    )
    if "train" not in source.splits:
        raise DataError(f"{spec.source}: no 'train' split to stream (splits: {', '.join(source.splits)})")
    source.choose_columns("train")
    has_validation = "validation" in source.splits
    start = time.perf_counter()
    found: Scan | None = scan(source, cfg, has_validation) if group is None or group.leader else None
    if group is not None:
        found = group.broadcast(found)
    assert found is not None
    labels = [x.strip() for x in cfg.labels.split(",") if x.strip()] if cfg.labels else sort_labels(set(found.counts))
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

    # ---- tokenizer (rank 0, broadcast) and the starting table
    tokenizer: Tokenizer
    pretrained = None
    if trainer_state is not None:
        from grutext.artifacts import read_meta

        previous = read_meta(output)
        tokenizer = previous.tokenizer
        model_cfg = dataclasses.replace(model_cfg, embed_dim=previous.model_config.embed_dim)
    elif group is None or group.leader:
        tokenizer = train_tokenizer(found.sample, tok_cfg)
        if cfg.vectors is not None:
            pretrained = pretrained_embeddings(
                cfg.vectors,
                tokenizer,
                tok_cfg,
                found.sample,
                cfg.seed,
                model_cfg.embed_dim,
                cfg.vectors_std,
            )
            tokenizer = pretrained.tokenizer
            model_cfg = dataclasses.replace(model_cfg, embed_dim=pretrained.summary["dim"])
    if group is not None and trainer_state is None:
        shared = group.broadcast((tokenizer.to_str(), model_cfg.embed_dim) if group.leader else None)
        if not group.leader:
            tokenizer = Tokenizer.from_str(shared[0])
            configure_truncation(tokenizer, tok_cfg)
            model_cfg = dataclasses.replace(model_cfg, embed_dim=shared[1])
    model_cfg = dataclasses.replace(model_cfg, embed_dim=model_cfg.embedding_size)
    sample_ids = encode(tokenizer, found.sample[:2000], tok_cfg)
    emit(
        TokenizerTrained(
            tok_cfg.kind,
            tokenizer.get_vocab_size(),
            time.perf_counter() - start,
            float(np.mean([len(r) for r in sample_ids])),
            sum(len(r) >= tok_cfg.max_length for r in sample_ids) / max(len(sample_ids), 1),
        )
    )
    if pretrained is not None:
        pretrained.summary["token_coverage"] = pretrained.token_coverage(sample_ids)
        emit(VectorsLoaded(pretrained.summary))

    # ---- model and optimizer
    shape = DataShape(tokenizer.get_vocab_size(), len(labels), found.multi_label)
    model = GRUClassifier(model_cfg.resolved_for(found.multi_label, tok_cfg.kind, streaming=True), shape)
    if pretrained is not None:
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(pretrained.weights))
    if task.prior is not None:
        with torch.no_grad():
            model.classifier.bias.copy_(task.prior)
            if model.cfg.bigram_buckets:
                model.bigram_classifier.bias.copy_(task.prior)
    model = prepare(model, device, backend)
    runner: torch.nn.Module = model
    if group is not None:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    lr = cfg.resolved_lr(found.multi_label)
    steps_per_epoch = cfg.steps_per_epoch or _estimated_steps(source, found, cfg, world)
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
    loop = LoopState(backend=backend)
    best_state = _clone(model.state_dict())
    position = [0]
    if trainer_state is not None:
        loop = LoopState(**trainer_state.loop)
        model.load_state_dict(trainer_state.model)
        best_state = {k: v.to(device) for k, v in trainer_state.best.items()}
        optimizer.load_state_dict({"optimizer": trainer_state.optimizer, "scheduler": trainer_state.scheduler})
        torch.set_rng_state(trainer_state.rng[f"cpu_rank{rank}" if group is not None else "cpu"])
    emit(ModelBuilt(model.num_parameters(), str(device), backend, (loop.epoch, loop.step) if trainer_state else None))

    validation = found.validation
    val_ids = _encode_compact(tokenizer, [r.text for r in validation], tok_cfg)
    index = {name: i for i, name in enumerate(labels)}
    val_y = _targets([r.labels for r in validation], index, found.multi_label)
    # The texts are no longer needed: only the ids stay in memory (int32 arrays: a list of Python ints costs
    # 9x as much, 150 MB for 20,000 texts of 200 tokens).
    found.sample.clear()
    found.validation.clear()
    del validation
    sections: dict[str, Any] = {"train": to_dict(cfg), "data": {}}
    sections["train"].update(resolved_early_stop_metric=task.metric, resolved_lr=lr, world_size=world)
    sections["train"]["resolved_word_dropout"] = word_dropout = cfg.resolved_word_dropout(found.multi_label)
    sections["data"] = {
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
    if pretrained is not None:
        sections["vectors"] = pretrained.summary

    write = checkpoint_writer(output, model, tokenizer, tok_cfg, labels, sections, task, group, resume or overwrite)

    with StopSignals() as stop, torch_threads(device, backend):
        stopped = f"ran all {cfg.epochs} epochs"
        position[0] = loop.data_position  # a resumed run goes on where it stopped, in the same pass

        def next_pass() -> Iterator[tuple[list[Ids], torch.Tensor]]:
            """The batches of the pass in progress: a pass is one read of the training stream, in its own order."""
            skip, position[0] = position[0], 0
            return _batches(
                source, tokenizer, tok_cfg, index, found.multi_label, cfg, loop.data_pass, skip, rank, world,
                has_validation, position,
            )  # fmt: skip

        batches: Iterator[tuple[list[Ids], torch.Tensor]] | None = None
        for epoch in range(loop.epoch, cfg.epochs + 1):
            loop.epoch = epoch
            emit(EpochStarted(epoch, cfg.epochs, steps_per_epoch))
            model.train()
            began = time.perf_counter() - loop.seconds
            batches = batches or next_pass()
            interrupted = False
            while cfg.steps_per_epoch is None or loop.step < cfg.steps_per_epoch:
                batch_ids, target = next(batches, ([], torch.empty(0)))
                ended = not batch_ids
                if cfg.steps_per_epoch is None and group is not None:  # every rank ends the pass at the same step
                    ended = group.any(ended)
                if ended:
                    loop.data_pass, position[0] = loop.data_pass + 1, 0
                    batches = next_pass()  # with --steps-per-epoch an epoch runs on into the next pass
                    if cfg.steps_per_epoch is None:
                        break
                    continue
                batch = collate(batch_ids, range(len(batch_ids))).to(device)
                if word_dropout:
                    hide = (torch.rand(batch.ids.shape, device=device) < word_dropout) & (batch.ids != PAD_ID)
                    batch.ids = batch.ids.masked_fill(hide, UNK_ID)
                target = target.to(device)
                loss = task.training_loss(
                    runner(batch.ids, batch.lengths), target, model.heads, task.normalizer(target.cpu())
                )
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                loop.step, loop.global_step = loop.step + 1, loop.global_step + 1
                loop.loss_sum += loss.item() * len(batch_ids) * world  # rank 0's estimate, over all ranks
                loop.seen += len(batch_ids) * world
                loop.tokens += int(batch.lengths.sum()) * world
                elapsed = time.perf_counter() - began
                emit(
                    StepDone(
                        epoch,
                        loop.step,
                        steps_per_epoch,
                        loop.global_step,
                        loop.loss_sum / max(loop.seen, 1),
                        loop.seen / max(elapsed, 1e-9),
                        optimizer.lr,
                    )
                )
                if cfg.max_steps is not None and loop.global_step >= cfg.max_steps:
                    break
                if _stopping(stop, group):
                    loop.seconds, interrupted = elapsed, True
                    break
            if interrupted:
                stopped = "interrupted"
                break
            seconds = time.perf_counter() - began
            end_epoch(model, task, loop, best_state, val_ids, val_y, device, group, seconds, emit)
            loop.data_position = position[0]  # end_epoch resets it for in-memory runs; a stream goes on
            if cfg.max_steps is not None and loop.global_step >= cfg.max_steps:
                stopped = f"reached --max-steps {cfg.max_steps}"
                break
            if loop.bad_epochs and loop.bad_epochs >= cfg.patience:
                stopped = f"early stop: no better validation {task.metric} for {loop.bad_epochs} epoch(s)"
                break
            if _stopping(stop, group):
                stopped = "interrupted"
                break

        if stopped == "interrupted" and stop.signum is not None:
            loop.data_position = position[0]
            state = interrupted_state(model, optimizer, loop, best_state, device, group)
            kept = best_state if loop.best_epoch else state.model
            path = write(kept, {"interrupted": True, "epoch": loop.epoch, "history": loop.history}, state)
            raise Interrupted(
                f"{signal.Signals(stop.signum).name} at epoch {loop.epoch}, step {loop.step}: saved a resumable "
                f"state in {path} (stream position {loop.data_position}); continue with the same command plus "
                "--resume",
                stop.signum,
            )
        model.load_state_dict(best_state)
        val_metrics, _, _ = task.score(_infer(model, val_ids, device, group), val_y, task.per_label)
        task.kept_decision = task.head.decision_section()
        metrics: dict[str, Any] = {
            "best_epoch": loop.best_epoch,
            "epochs_run": len(loop.history),
            "stopped": stopped,
            "train_seconds": round(sum(h["seconds"] for h in loop.history), 2),
            "validation": val_metrics,
        }
        if "test" in source.splits:
            metrics["test"] = _score_test(model, source, tokenizer, tok_cfg, task, found.multi_label, device, group)
            if "unknown_labels" in metrics["test"]:
                emit(UnknownLabels("test", f"{source.name} [test]", metrics["test"]["unknown_labels"]))
    metrics["history"] = loop.history
    path = write(best_state, metrics, None)
    emit(Finished(path, loop.best_epoch, stopped, metrics))
    if group is not None:
        group.close()
    return TrainResult(path, metrics, [EpochDone(**h) for h in loop.history])


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
    model: GRUClassifier,
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
            probs.append(task.head.probabilities(_infer(model, ids, device, group)))
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
