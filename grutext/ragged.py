"""Per-text rows kept as flat numpy arrays: what a run holds of each text, computed once. numpy only.

A list of Python lists costs 36 bytes an entry (a pointer and an int object) and a Python loop to pad; imdb's
22,500 training texts held 0.8 GB of character n-gram lists, rebuilt into a batch's distinct rows with np.unique
at every step of every epoch. `Bags` keeps each text's distinct n-gram rows and their counts (6 bytes an entry),
and a batch is two gathers. `Rows` keeps the token ids the same way (4 bytes a token), padded by one gather.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

COUNT = np.uint16  # a text's count of one n-gram row; uint32 for a chunk where one is above 65,535 (max_length
# allows a million tokens)


class Bags(Sequence[npt.NDArray[np.int32]]):
    """Bags of rows, one a text: the distinct rows (ascending) and how often each occurs. Indexing gives a text's
    rows with their repeats, as a list of them would hold (for code that reads one text); batches use `pad`."""

    def __init__(
        self, rows: npt.NDArray[np.int32], counts: npt.NDArray[np.unsignedinteger[Any]], offsets: npt.NDArray[np.int64]
    ):
        self.rows, self.counts, self.offsets = rows, counts, offsets

    @classmethod
    def join(cls, parts: Sequence[Bags]) -> Bags:
        """One Bags of several, in order (none: no texts)."""
        if len(parts) == 1:
            return parts[0]
        offsets = _joined_offsets([p.offsets for p in parts])
        rows = np.concatenate([p.rows for p in parts]) if parts else np.zeros(0, np.int32)
        counts = np.concatenate([p.counts for p in parts]) if parts else np.zeros(0, COUNT)
        return cls(rows, counts, offsets)

    @classmethod
    def of(cls, text_of: npt.NDArray[np.int64], rows: npt.NDArray[np.int64], texts: int) -> Bags:
        """The bags of (text, row) pairs, texts numbered 0..texts-1: one sort for all of them, of 32-bit keys where
        (text, row) fits in 32 bits (2.5x faster than 64-bit ones)."""
        top = int(rows.max()) if rows.size else 0
        if top >= 2**31:
            raise ValueError("n-gram rows must be below 2**31")
        shift = max(1, top.bit_length())
        wide = shift + max(1, (texts - 1).bit_length()) > 32
        keys = (text_of.astype(np.int64) << shift) | rows
        distinct, counts = np.unique(keys if wide else keys.astype(np.uint32), return_counts=True)
        distinct = distinct.astype(np.int64)
        per_text = np.bincount(distinct >> shift, minlength=texts)
        offsets = np.zeros(texts + 1, dtype=np.int64)
        np.cumsum(per_text, out=offsets[1:])
        wide_counts = counts.size and int(counts.max()) > np.iinfo(COUNT).max
        rows_of = (distinct & ((1 << shift) - 1)).astype(np.int32)
        return cls(rows_of, counts.astype(np.uint32 if wide_counts else COUNT), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> npt.NDArray[np.int32]:  # type: ignore[override]
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return np.repeat(self.rows[a:b], self.counts[a:b])

    def __iter__(self) -> Iterator[npt.NDArray[np.int32]]:
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        return int(self.rows.nbytes + self.counts.nbytes + self.offsets.nbytes)

    def pad(self, index: Sequence[int]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The chosen texts' distinct rows and counts, right-padded with row 0 and count 0."""
        sizes, text, position, source = _spans(self.offsets, index)
        width = max(1, int(sizes.max(initial=0)))
        rows = np.zeros((len(sizes), width), dtype=np.int64)
        counts = np.zeros((len(sizes), width), dtype=np.float32)
        rows[text, position] = self.rows[source]
        counts[text, position] = self.counts[source]
        return rows, counts


class Rows(Sequence[npt.NDArray[np.int32]]):
    """Token-id rows, one a text, in one flat int32 array and offsets: 4 bytes a token, where a list of Python
    ints takes 8 for the pointer and 32 for each id above 256. Indexing gives a text's ids (a view); batches use
    `pad`."""

    def __init__(self, values: npt.NDArray[np.int32], offsets: npt.NDArray[np.int64]):
        self.values, self.offsets = values, offsets

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]]) -> Rows:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=int(offsets[-1]))
        return cls(values, offsets)

    @classmethod
    def join(cls, parts: Sequence[Rows]) -> Rows:
        """One Rows of several, in order (none: no texts)."""
        if len(parts) == 1:
            return parts[0]
        values = np.concatenate([p.values for p in parts]) if parts else np.zeros(0, np.int32)
        return cls(values, _joined_offsets([p.offsets for p in parts]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> npt.NDArray[np.int32]:  # type: ignore[override]
        return self.values[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def __iter__(self) -> Iterator[npt.NDArray[np.int32]]:
        return (self[i] for i in range(len(self)))

    def lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + self.offsets.nbytes)

    def pad(self, index: Sequence[int], fill: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The chosen rows right-padded with `fill` to the longest of them, and their lengths (an empty row is
        one `fill` token, so every length >= 1)."""
        sizes, text, position, source = _spans(self.offsets, index)
        out = np.full((len(sizes), max(1, int(sizes.max(initial=0)))), fill, dtype=np.int64)
        out[text, position] = self.values[source]
        return out, np.maximum(sizes, 1)


def _joined_offsets(parts: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    """The offsets of ragged arrays laid end to end: each part's shifted by the entries before it."""
    shifted, total = [np.zeros(1, np.int64)], 0
    for offsets in parts:
        shifted.append(offsets[1:] + (total - offsets[0]))
        total += int(offsets[-1] - offsets[0])
    return np.concatenate(shifted).astype(np.int64)


def _spans(
    offsets: npt.NDArray[np.int64], index: Sequence[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For the chosen texts of a ragged array: each one's size, and for each of their entries its text (row of
    the batch), its position in that text and its place in the flat array; padding a batch is one gather."""
    pick = np.asarray(index, dtype=np.int64)
    starts = offsets[pick]
    sizes = offsets[pick + 1] - starts
    text = np.repeat(np.arange(len(pick)), sizes)
    position = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return sizes, text, position, np.repeat(starts, sizes) + position
