"""Where a run executes, decided once before anything is built: the device, the process group under torchrun,
and the backend (the fast CPU path or the reference). Every kind of run starts here, so a streamed run on CUDA
under torchrun gets its rank's GPU exactly as an in-memory one does."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from grutext.backend import choose, resolve_device
from grutext.distributed import Group
from grutext.errors import ConfigError
from grutext.events import Event, silent


@dataclass
class Runtime:
    device: torch.device
    group: Group | None  # None: one process
    backend: str  # "fast" or "reference"

    @property
    def rank(self) -> int:
        return self.group.rank if self.group is not None else 0

    @property
    def world(self) -> int:
        return self.group.world if self.group is not None else 1

    @property
    def leader(self) -> bool:
        """Rank 0, or the only process: the one that trains the tokenizer, prints and writes."""
        return self.group is None or self.group.leader

    def emitter(self, emit: Callable[[Event], None]) -> Callable[[Event], None]:
        """Progress and logs come from rank 0 only."""
        return emit if self.leader else silent

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the loop runs: the model, or under torchrun its DistributedDataParallel wrapper (which averages
        the gradients over ranks and starts every rank from rank 0's weights)."""
        if self.group is None:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def close(self) -> None:
        if self.group is not None:
            self.group.close()


def start(device: str, backend: str) -> Runtime:
    """Choose the device, join torchrun's process group (if any) and pick the backend. Under torchrun each rank
    on CUDA takes the GPU of its LOCAL_RANK, and the reference backend runs: the fast path's lazy embedding rows
    cannot go through DDP's all-reduce."""
    chosen = resolve_device(device)
    group = Group.from_env(chosen.type)
    if group is not None and chosen.type == "cuda":
        chosen = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(chosen)
    runs_on = choose(chosen, "reference" if group is not None and backend == "auto" else backend)
    if group is not None and runs_on == "fast":
        raise ConfigError("--backend fast cannot train data-parallel (its embedding rows are sparse); use auto")
    return Runtime(chosen, group, runs_on)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def release_memory() -> None:
    """Hand the memory freed since the last call back to the system, where the C library can (glibc's
    malloc_trim). After encoding imdb's 25,000 test reviews glibc kept about 220 MB of freed transient
    objects (bench/probes/encode_memory.py), which the run's peak RSS held to the end."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes

    try:  # the C library the process already has loaded
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
