"""Token ids -> length-bucketed, right-padded tensor batches; batched inference that keeps input order.

Bucketing: shuffle, cut into chunks of many batches, sort each chunk by length, cut into batches, shuffle
the batches. Each batch then holds texts of nearly equal length, so padding costs a few percent, while
the order still changes every epoch.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from grutext.config import INFER_BATCH_SIZE
from grutext.ragged import Bags, Rows
from grutext.tokenizer import PAD_ID

if TYPE_CHECKING:  # torch is imported where tensors are made: the ONNX engine pads with this module, torch-free
    import torch

BUCKET_CHUNK = 50  # batches per sorting chunk
# Token ids per text: lists of ints, or int32 arrays where many are held (streaming keeps them compact).
TokenRows = Sequence[Sequence[int] | npt.NDArray[np.int32]]


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T] int64, right-padded with PAD_ID
    lengths: torch.Tensor  # [B] int64, each >= 1
    index: list[int]  # position of each row in the source sequence
    grams: torch.Tensor | None = None  # [B, G] int64: distinct character n-gram rows (for models that read them)
    gram_counts: torch.Tensor | None = None  # [B, G] float32: how often each occurs, 0 in the padding

    def to(self, device: torch.device) -> Batch:
        if self.grams is None or self.gram_counts is None:
            return Batch(self.ids.to(device), self.lengths.to(device), self.index)
        grams, gram_counts = self.grams.to(device), self.gram_counts.to(device)
        return Batch(self.ids.to(device), self.lengths.to(device), self.index, grams, gram_counts)

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        """What the model's forward takes: (ids, lengths), then (grams, gram_counts) where there are some."""
        if self.grams is None or self.gram_counts is None:
            return self.ids, self.lengths
        return self.ids, self.lengths, self.grams, self.gram_counts


def row_lengths(ids: TokenRows) -> list[int]:
    """Each row's length (Rows know theirs without a view a row)."""
    return ids.lengths().tolist() if isinstance(ids, Rows) else [len(r) for r in ids]


def pad(ids: TokenRows, index: Sequence[int]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The chosen rows right-padded to the longest of them, and their lengths. An empty row becomes one PAD
    token, so every length >= 1."""
    if isinstance(ids, Rows):
        return ids.pad(index, PAD_ID)
    rows = [ids[i] for i in index]
    lengths = np.array([max(1, len(r)) for r in rows], dtype=np.int64)
    out = np.full((len(rows), int(lengths.max())), PAD_ID, dtype=np.int64)
    for j, row in enumerate(rows):
        out[j, : len(row)] = row
    return out, lengths


def pad_grams(grams: TokenRows, index: Sequence[int]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The chosen texts' character n-gram rows as distinct rows and their counts, right-padded (row 0, count 0).
    The model's mean weighs each row by its count, so this is the same bag as every occurrence read one by one,
    over a third of the rows on long texts (bbc: 1,602 distinct of 4,819 a text). Bags (what encode_inputs
    makes) hold each text's bag already; other rows take one np.unique for the batch, each entry keyed by (text,
    row), rows < 2**32 (MAX_VOCAB and the buckets are far below)."""
    if isinstance(grams, Bags):
        return grams.pad(index)
    lengths = np.array([len(grams[i]) for i in index], dtype=np.int64)
    flat = np.fromiter(itertools.chain.from_iterable(grams[i] for i in index), dtype=np.int64, count=int(lengths.sum()))
    keys, counts = np.unique((np.repeat(np.arange(len(index)), lengths) << 32) | flat, return_counts=True)
    text, row = keys >> 32, keys & 0xFFFFFFFF
    per_text = np.bincount(text, minlength=len(index))
    position = np.arange(len(keys)) - np.repeat(np.cumsum(per_text) - per_text, per_text)
    ids = np.zeros((len(index), max(1, int(per_text.max(initial=0)))), dtype=np.int64)
    out = np.zeros(ids.shape, dtype=np.float32)
    ids[text, position], out[text, position] = row, counts
    return ids, out


def collate(ids: TokenRows, index: Sequence[int], grams: TokenRows | None = None) -> Batch:
    """pad() as tensors, with the rows' positions in `ids` (and the rows' character n-grams, if given)."""
    import torch

    out, lengths = pad(ids, index)
    batch = Batch(torch.from_numpy(out), torch.from_numpy(lengths), list(index))
    if grams is not None:
        rows, counts = pad_grams(grams, index)
        batch.grams, batch.gram_counts = torch.from_numpy(rows), torch.from_numpy(counts)
    return batch


def bucket_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of indices, each of similar lengths (for training)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * BUCKET_CHUNK
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        # each batch longest first: the native kernel takes its rows in that order without a reordering copy
        batches.extend(part[k : k + batch_size][::-1] for k in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of indices sorted by length, longest first (for inference: minimal padding)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def tokens_per_batch_size(batch_size: int, max_len: int) -> int:
    """Inference batches are sized by tokens, so long documents don't blow up memory."""
    return max(1, min(batch_size, 65536 // max(1, max_len)))


def inference_batches(ids: TokenRows, batch_size: int = INFER_BATCH_SIZE) -> list[list[int]]:
    """Batches of positions for inference: sorted by length, longest first, sized by tokens."""
    lengths = [max(1, n) for n in row_lengths(ids)]
    out: list[list[int]] = []
    for index in sorted_batches(lengths, batch_size):
        size = tokens_per_batch_size(batch_size, lengths[index[0]])
        out.extend(index[k : k + size] for k in range(0, len(index), size))
    return out


def infer(
    model: torch.nn.Module,
    ids: TokenRows,
    device: torch.device,
    batch_size: int = INFER_BATCH_SIZE,
    grams: TokenRows | None = None,
) -> torch.Tensor:
    """Logits [N, C] on the CPU, in the order of `ids` (`grams`: the rows' character n-grams, for a model
    that reads them)."""
    import torch

    was_training = model.training
    model.eval()
    out: torch.Tensor | None = None
    with torch.inference_mode():
        for index in inference_batches(ids, batch_size):
            batch = collate(ids, index, grams).to(device)
            logits = model(*batch.inputs).float().cpu()  # [B, C]
            if out is None:
                out = torch.empty(len(ids), logits.size(1))
            out[batch.index] = logits
    model.train(was_training)
    if out is None:
        raise ValueError("infer() needs at least one text")
    return out
