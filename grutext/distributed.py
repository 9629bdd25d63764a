"""Data-parallel training under torchrun: the process group and the few collectives the training loop needs.

`torchrun --nproc-per-node N -m grutext train ...` starts N processes with RANK, WORLD_SIZE and LOCAL_RANK
set; `Group.from_env()` joins them (gloo on the CPU, NCCL on CUDA). Every rank reads the data; rank 0 trains
the tokenizer and broadcasts it, so all ranks hold the identical vocabulary whatever the tokenizer kind.
Each global batch (--batch-size x ranks texts, in an order that depends only on the seed and the epoch) is
cut into one slice per rank; DistributedDataParallel averages the gradients, so N ranks x batch B take the
steps one process takes with batch N x B. Validation is sharded and gathered, so every rank decides early
stopping identically; only rank 0 prints and writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Group:
    rank: int
    world: int
    local_rank: int
    device: str = "cpu"  # where collectives' tensors live: NCCL reduces CUDA tensors only

    @staticmethod
    def from_env(device_kind: str) -> Group | None:
        """Join the process group torchrun describes in the environment; None for a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}" if device_kind == "cuda" else "cpu"
        return Group(dist.get_rank(), dist.get_world_size(), local, device)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's object on every rank."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's object, in rank order, on every rank."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank says so (a signal seen by one rank stops all at the same step)."""
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
