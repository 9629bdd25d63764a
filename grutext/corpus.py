"""Unlabelled text for `grutext pretrain` and `grutext train --unlabeled`, and the language model's batches.

Sources, as `train` reads them but without labels: a file (plain text one text a line, fastText .txt with its
labels dropped, csv/tsv/jsonl/parquet with a text column, gzipped too), a folder (split files: their train
split only, never test; otherwise every supported file below it, each .txt file one text, as a
folder-per-class dataset reads them), a `save_to_disk` folder or a hub id (the train split's text column).

The corpus is deduplicated and put in an order that depends only on its texts, so that the same texts named in
another order (or split differently between `--unlabeled` and the training file) give the same language model.
A held-out share, chosen by a hash of each text, measures perplexity.
"""

from __future__ import annotations

import hashlib
import os
import random
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from grutext.batching import TokenRows, collate
from grutext.errors import DataError
from grutext.inputs import iter_texts
from grutext.loop import BatchSource, LoopState, TrainBatch, Validation
from grutext.readers import (
    FORMATS,
    _is_save_to_disk,
    decode_text,
    file_format,
    open_tables,
    split_files,
    text_column_by_name,
)
from grutext.sources import Bucketed
from grutext.tokenizer import unknown_share

HOLD_OUT_BUCKETS = 10_000
# Held-out tokens scored for perplexity: the full softmax over 30,000 words took 48 s for imdb's 155k held-out
# tokens; 25k give the perplexity to within about a percent in a tenth of the time.
HELD_OUT_TOKENS = 25_000


@dataclass
class Corpus:
    """Unlabelled texts, deduplicated and in canonical order, with the held-out ones apart."""

    train: list[str]
    held_out: list[str]
    sources: list[str]
    read: int  # texts read, duplicates and empty ones included

    @property
    def size(self) -> int:
        return len(self.train) + len(self.held_out)

    def fingerprint(self) -> str:
        """A hash of every text, so --resume refuses a corpus that changed."""
        digest = hashlib.sha256()
        for part in (self.train, self.held_out):
            for text in part:
                digest.update(text.encode("utf-8", "surrogatepass") + b"\x00")
            digest.update(b"\x01")
        return digest.hexdigest()


def read_corpus(
    sources: Sequence[str],
    text_column: str | None = None,
    held_out: float = 0.02,
    max_held_out: int = 2000,
    extra: Sequence[str] = (),
) -> Corpus:
    """Every non-empty text of every source (and of `extra`, texts already read), once; `held_out` of them (at
    most `max_held_out`) set aside."""
    ordered, read = read_texts(sources, text_column, extra)
    bar = held_out * HOLD_OUT_BUCKETS
    kept = [t for t in ordered if _hash(t) % HOLD_OUT_BUCKETS < bar][:max_held_out]
    if not kept:  # a tiny corpus: the texts that hash lowest
        kept = ordered[: max(1, round(held_out * len(ordered)))]
    if len(kept) == len(ordered):
        raise DataError(f"{', '.join(sources)} holds {len(ordered)} distinct text(s): too few to hold some out")
    chosen = set(kept)
    return Corpus([t for t in ordered if t not in chosen], kept, list(sources), read)


def read_texts(
    sources: Sequence[str], text_column: str | None = None, extra: Sequence[str] = ()
) -> tuple[list[str], int]:
    """(every distinct non-empty text of the sources and of `extra`, in an order that depends only on the texts;
    how many were read in all)."""
    if not sources and not extra:
        raise DataError("no texts to read: name at least one file, folder or hub dataset")
    texts: set[str] = set()
    read = 0
    for text in [*(t for source in sources for t in _texts_of(source, text_column)), *extra]:
        read += 1
        if text.strip():
            texts.add(text)
    if not texts:
        raise DataError(f"{', '.join(sources) or 'the texts'} holds no text (every record is empty)")
    return sorted(texts, key=lambda t: (_hash(t), t)), read


def _hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def _texts_of(source: str, text_column: str | None) -> Iterator[str]:
    path = Path(source).expanduser()
    if path.is_file():
        yield from iter_texts([str(path)], "auto", text_column)
        return
    if path.is_dir():
        if _is_save_to_disk(path) or split_files(path):  # a dataset's folder: its train split, never its test
            yield from _table_texts(source, text_column)
            return
        files = sorted(p for p in path.rglob("*") if p.is_file() and file_format(p) is not None)
        if not files:
            known = ", ".join(sorted(FORMATS))
            raise DataError(f"{path} holds no file grutext reads ({known}, gzipped too)")
        for file in files:
            if file_format(file) == "fasttext":  # a document a file, as a folder-per-class dataset reads it
                yield decode_text(_read(file), str(file))
            else:
                yield from iter_texts([str(file)], "auto", text_column)
        return
    yield from _table_texts(source, text_column)  # a hub id (open_tables says so if it is neither)


def _read(path: Path) -> bytes:
    from grutext.readers import _open_bytes

    return _open_bytes(path)


def _table_texts(source: str, text_column: str | None) -> Iterator[str]:
    tables = open_tables(source)
    split = "train" if "train" in tables else next(iter(tables))
    table = tables[split]
    column = text_column or text_column_by_name(list(table.columns))
    if column is None or column not in table.columns:
        raise DataError(
            f"cannot tell which column of {table.origin} holds the texts (columns: {', '.join(table.columns)}); "
            "pass --text-column"
        )
    yield from (str(v) for v in table.columns[column] if v is not None)


def windows(ids: TokenRows, length: int) -> list[npt.NDArray[np.int32]]:
    """Each text's token ids cut into windows of at most `length` tokens; a window needs two tokens to predict
    anything, so shorter ones are left out."""
    out = []
    for row in ids:
        row = np.asarray(row, dtype=np.int32)
        for start in range(0, len(row), length):
            piece = row[start : start + length]
            if len(piece) >= 2:
                out.append(piece)
    return out


def budgeted(rows: list[npt.NDArray[np.int32]], tokens: int) -> list[npt.NDArray[np.int32]]:
    """The first rows, up to `tokens` tokens in all (at least one row)."""
    kept: list[npt.NDArray[np.int32]] = []
    total = 0
    for row in rows:
        if kept and total + len(row) > tokens:
            break
        kept.append(row)
        total += len(row)
    return kept


class CorpusBatches(Bucketed):
    """The language model's training batches (a grutext.loop.BatchSource): windows of token ids, length-bucketed
    as a classifier's in-memory batches are; under torchrun each rank takes its slice of every global batch (the
    loss is each rank's mean over its tokens, which DDP averages)."""

    def __init__(
        self, ids: TokenRows, batch_size: int, seed: int, rank: int = 0, world: int = 1, max_steps: int | None = None
    ) -> None:
        super().__init__(ids, batch_size, seed, world, max_steps)
        self.rank = rank

    def batches(self, loop: LoopState) -> Iterator[TrainBatch]:
        plan = self.plan(loop.epoch)
        for step in range(loop.step, len(plan)):
            whole = plan[step]
            inputs = collate(self.ids, whole[self.rank :: self.world])
            yield TrainBatch(inputs, torch.empty(0), len(whole), sum(self.lengths[i] for i in whole))


class LanguageObjective:
    """The loop's objective for a language model: the sampled-softmax loss of a batch, with K words drawn for it
    from the unigram distribution raised to 0.75, and the full-softmax perplexity of the held-out windows."""

    metric = "perplexity"

    def __init__(
        self,
        model: torch.nn.Module,
        counts: npt.NDArray[np.int64],
        samples: int,
        held_out: list[npt.NDArray[np.int32]],
        device: torch.device,
        batch_size: int = 64,
    ) -> None:
        self.model, self.samples, self.device = model, samples, device
        self.held_out = budgeted(held_out, HELD_OUT_TOKENS)
        self.batch_size = batch_size
        q = torch.as_tensor(counts, dtype=torch.float64).clamp(min=0) ** 0.75
        q[0] = 0.0  # never draw the padding token
        self.proposal = (q / q.sum()).float()
        self.log_expected = torch.log((samples * self.proposal).clamp(min=1e-12)).to(device)

    def loss(self, runner: torch.nn.Module, batch: TrainBatch, device: torch.device) -> torch.Tensor:
        inputs = batch.inputs.to(device)
        negatives = torch.multinomial(self.proposal, self.samples, replacement=True).to(device)
        loss: torch.Tensor = runner(inputs.ids, inputs.lengths, negatives, self.log_expected)
        return loss

    def perplexity(self) -> tuple[float, int]:
        """(held-out perplexity, tokens scored). The full softmax is a large matmul, which shares the cores well
        (the training steps run one intra-op thread on the fast backend)."""
        was, threads = self.model.training, torch.get_num_threads()
        self.model.eval()
        torch.set_num_threads(max(threads, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
        total, count = 0.0, 0
        order = sorted(range(len(self.held_out)), key=lambda i: len(self.held_out[i]))
        for k in range(0, len(order), self.batch_size):
            batch = collate(self.held_out, order[k : k + self.batch_size]).to(self.device)
            part, n = self.model.log_likelihood(batch.ids, batch.lengths)  # type: ignore[operator]
            total, count = total + part, count + n
        self.model.train(was)
        torch.set_num_threads(threads)
        return (float(np.exp(-total / max(count, 1))), count)

    def validate(self) -> Validation:
        ppl, _ = self.perplexity()
        nll = float(np.log(ppl))
        return Validation(nll, self.metric, ppl, [-nll, 0.0])

    def keep(self) -> None:
        """Nothing beyond the weights goes with the best epoch."""


# ------------------------------------------------------------------------------------------ prepared corpora
ENCODE_CHUNK = 4096  # texts encoded at a time when streaming


@dataclass
class Prepared:
    """A corpus as the language model's run needs it, held in memory or streamed."""

    source: BatchSource
    steps_per_epoch: int  # planned (a stream's is counted by its scan)
    held_out: list[npt.NDArray[np.int32]]  # windows perplexity is measured on
    counts: npt.NDArray[np.int64]  # each token's count in the training texts (a stream's: in its sample)
    tokens: int  # training tokens (a stream's: in its sample)
    unknown: float  # their share of [UNK]
    mean_tokens: float  # per text
    long_share: float  # share of texts longer than the tokenizer's max_length
    windows: int  # training windows (a stream's: those of its sample)


def _counts(ids: Sequence[Sequence[int]], vocab: int) -> npt.NDArray[np.int64]:
    flat = [np.asarray(r, dtype=np.int64) for r in ids if len(r)]
    counts = np.bincount(np.concatenate(flat), minlength=vocab) if flat else np.zeros(vocab, dtype=np.int64)
    return counts[:vocab]


def _stats(ids: Sequence[Sequence[int]], max_length: int) -> tuple[int, float, float, float]:
    tokens, unknown = unknown_share(ids)
    return tokens, unknown, tokens / max(len(ids), 1), sum(len(r) > max_length for r in ids) / max(len(ids), 1)


def prepare_memory(
    corpus: Corpus, encode_all: Callable[[list[str]], list[list[int]]], vocab: int, max_length: int,
    window: int, batch_size: int, seed: int, rank: int, world: int, max_steps: int | None,
) -> Prepared:  # fmt: skip
    """Every text encoded and cut into windows, held in memory."""
    train_ids, held_ids = encode_all(corpus.train), encode_all(corpus.held_out)
    rows = windows(train_ids, window)
    source = CorpusBatches(rows, batch_size, seed, rank, world, max_steps)
    tokens, unknown, mean, long_share = _stats(train_ids, max_length)
    steps = -(-len(rows) // (batch_size * world))
    return Prepared(
        source, steps, windows(held_ids, window), _counts(train_ids, vocab), tokens, unknown, mean, long_share,
        len(rows),
    )  # fmt: skip


@dataclass
class Scan:
    """What one pass over a streamed corpus found: the tokenizer's sample, the held-out texts, the count."""

    sample: list[str]
    held_out: list[str]
    texts: int  # training texts (the held-out ones aside)
    read: int


def scan_stream(
    sources: Sequence[str], text_column: str | None, held_out: float, max_held_out: int, sample: int
) -> Scan:
    """One pass: the first `sample` training texts, the first `max_held_out` held-out ones, and how many."""
    found = Scan([], [], 0, 0)
    bar = held_out * HOLD_OUT_BUCKETS
    for text in (t for source in sources for t in _texts_of(source, text_column)):
        found.read += 1
        if not text.strip():
            continue
        if _hash(text) % HOLD_OUT_BUCKETS < bar:
            if len(found.held_out) < max_held_out:
                found.held_out.append(text)
            continue
        found.texts += 1
        if len(found.sample) < sample:
            found.sample.append(text)
    if not found.sample:
        raise DataError(f"{', '.join(sources)} holds no text (every record is empty)")
    if not found.held_out:
        raise DataError(
            f"{', '.join(sources)}: none of its {found.texts} texts fell in the held-out share; raise --held-out"
        )
    return found


class CorpusStream:
    """The language model's batches read pass after pass from its sources (a grutext.loop.BatchSource): each
    pass encodes texts as they come, cuts them into windows, shuffles them through a buffer, sorts chunks of
    the buffer by length and cuts batches. `loop.data_pass` and `loop.data_position` (texts read in the pass)
    follow the reading, so --resume goes on in the pass it stopped in (after the texts read before the stop;
    those still in the buffer then are not seen again in that pass)."""

    def __init__(
        self, sources: Sequence[str], text_column: str | None, encode_all: Callable[[list[str]], list[list[int]]],
        window: int, batch_size: int, seed: int, held_out: float, buffer: int, steps: int,
        rank: int = 0, world: int = 1, group: Any = None,
    ) -> None:  # fmt: skip
        self.sources, self.text_column, self.encode_all = list(sources), text_column, encode_all
        self.window, self.batch_size, self.seed, self.held_out = window, batch_size, seed, held_out
        self.buffer, self.steps, self.rank, self.world, self.group = buffer, steps, rank, world, group
        self._pass: Iterator[list[npt.NDArray[np.int32]]] | None = None

    def epoch_steps(self, loop: LoopState) -> int:
        return self.steps

    def batches(self, loop: LoopState) -> Iterator[TrainBatch]:
        while True:
            if self._pass is None:
                self._pass = self._read(loop, skip=loop.data_position)
            rows = next(self._pass, None)
            ended = rows is None
            if self.group is not None:  # every rank ends the pass at the same step
                ended = self.group.any(ended)
            if ended or rows is None:
                loop.data_pass, loop.data_position, self._pass = loop.data_pass + 1, 0, None
                return
            inputs = collate(rows, range(len(rows)))
            yield TrainBatch(inputs, torch.empty(0), len(rows) * self.world, int(inputs.lengths.sum()) * self.world)

    def _read(self, loop: LoopState, skip: int) -> Iterator[list[npt.NDArray[np.int32]]]:
        rng = random.Random(f"{self.seed}-{loop.data_pass}-{self.rank}")
        bar = self.held_out * HOLD_OUT_BUCKETS
        buffer: list[npt.NDArray[np.int32]] = []
        pending: list[str] = []

        def flush() -> Iterator[list[npt.NDArray[np.int32]]]:
            rng.shuffle(buffer)
            chunk = self.batch_size * 50
            groups: list[list[npt.NDArray[np.int32]]] = []
            for start in range(0, len(buffer), chunk):
                part = sorted(buffer[start : start + chunk], key=len)
                groups.extend(part[k : k + self.batch_size] for k in range(0, len(part), self.batch_size))
            rng.shuffle(groups)
            buffer.clear()
            yield from groups

        texts = (t for source in self.sources for t in _texts_of(source, self.text_column))
        for i, text in enumerate(texts):
            loop.data_position = i + 1
            if i < skip or i % self.world != self.rank or not text.strip():
                continue
            if _hash(text) % HOLD_OUT_BUCKETS < bar:
                continue
            pending.append(text)
            if len(pending) >= ENCODE_CHUNK:
                buffer.extend(windows(self.encode_all(pending), self.window))
                pending.clear()
            if len(buffer) >= self.buffer:
                yield from flush()
        buffer.extend(windows(self.encode_all(pending), self.window))
        yield from flush()
