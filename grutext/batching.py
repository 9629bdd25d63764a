"""Token ids -> length-bucketed, right-padded tensor batches; batched inference that keeps input order.

Bucketing: shuffle, cut into chunks of many batches, sort each chunk by length, cut into batches, shuffle
the batches. Each batch then holds texts of nearly equal length, so padding costs a few percent, while
the order still changes every epoch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from grutext.config import INFER_BATCH_SIZE
from grutext.tokenizer import PAD_ID

BUCKET_CHUNK = 50  # batches per sorting chunk


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T] int64, right-padded with PAD_ID
    lengths: torch.Tensor  # [B] int64, each >= 1
    index: list[int]  # position of each row in the source sequence

    def to(self, device: torch.device) -> Batch:
        return Batch(self.ids.to(device), self.lengths.to(device), self.index)


def collate(ids: Sequence[Sequence[int]], index: Sequence[int]) -> Batch:
    """Pad the chosen rows to the longest of them. An empty row becomes one PAD token, so every length >= 1."""
    rows = [ids[i] for i in index]
    lengths = [max(1, len(r)) for r in rows]
    out = np.full((len(rows), max(lengths)), PAD_ID, dtype=np.int64)
    for j, row in enumerate(rows):
        out[j, : len(row)] = row
    return Batch(torch.from_numpy(out), torch.tensor(lengths, dtype=torch.int64), list(index))


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


@torch.inference_mode()
def infer(
    model: torch.nn.Module, ids: Sequence[Sequence[int]], device: torch.device, batch_size: int = INFER_BATCH_SIZE
) -> torch.Tensor:
    """Logits [N, C] on the CPU, in the order of `ids`."""
    was_training = model.training
    model.eval()
    lengths = [max(1, len(r)) for r in ids]
    out: torch.Tensor | None = None
    for index in sorted_batches(lengths, batch_size):
        size = tokens_per_batch_size(batch_size, lengths[index[0]])
        for k in range(0, len(index), size):
            batch = collate(ids, index[k : k + size]).to(device)
            logits = model(batch.ids, batch.lengths).float().cpu()  # [B, C]
            if out is None:
                out = torch.empty(len(ids), logits.size(1))
            out[batch.index] = logits
    model.train(was_training)
    if out is None:
        raise ValueError("infer() needs at least one text")
    return out
