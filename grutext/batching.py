"""Token ids -> length-bucketed, right-padded tensor batches; batched inference that keeps input order.

Bucketing: shuffle, cut into chunks of many batches, sort each chunk by length, cut into batches, shuffle
the batches. Each batch then holds texts of nearly equal length, so padding costs a few percent, while
the order still changes every epoch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from grutext.config import INFER_BATCH_SIZE
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

    def to(self, device: torch.device) -> Batch:
        return Batch(self.ids.to(device), self.lengths.to(device), self.index)


def pad(ids: TokenRows, index: Sequence[int]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The chosen rows right-padded to the longest of them, and their lengths. An empty row becomes one PAD
    token, so every length >= 1."""
    rows = [ids[i] for i in index]
    lengths = np.array([max(1, len(r)) for r in rows], dtype=np.int64)
    out = np.full((len(rows), int(lengths.max())), PAD_ID, dtype=np.int64)
    for j, row in enumerate(rows):
        out[j, : len(row)] = row
    return out, lengths


def collate(ids: TokenRows, index: Sequence[int]) -> Batch:
    """pad() as tensors, with the rows' positions in `ids`."""
    import torch

    out, lengths = pad(ids, index)
    return Batch(torch.from_numpy(out), torch.from_numpy(lengths), list(index))


def bucket_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of indices, each of similar lengths (for training)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * BUCKET_CHUNK
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[k : k + batch_size] for k in range(0, len(part), batch_size))
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
    lengths = [max(1, len(r)) for r in ids]
    out: list[list[int]] = []
    for index in sorted_batches(lengths, batch_size):
        size = tokens_per_batch_size(batch_size, lengths[index[0]])
        out.extend(index[k : k + size] for k in range(0, len(index), size))
    return out


def infer(
    model: torch.nn.Module, ids: TokenRows, device: torch.device, batch_size: int = INFER_BATCH_SIZE
) -> torch.Tensor:
    """Logits [N, C] on the CPU, in the order of `ids`."""
    import torch

    was_training = model.training
    model.eval()
    out: torch.Tensor | None = None
    with torch.inference_mode():
        for index in inference_batches(ids, batch_size):
            batch = collate(ids, index).to(device)
            logits = model(batch.ids, batch.lengths).float().cpu()  # [B, C]
            if out is None:
                out = torch.empty(len(ids), logits.size(1))
            out[batch.index] = logits
    model.train(was_training)
    if out is None:
        raise ValueError("infer() needs at least one text")
    return out
