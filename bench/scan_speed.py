"""The GRU scans alone: the TorchScript scan (grutext/fast/scan.py) against the native kernel
(grutext/fast/kernel.cpp), forward and forward + backward, median milliseconds.

    python bench/scan_speed.py

Two scans in parallel, one thread each (as the fast backend runs them: the two directions of a layer, or two
halves of a batch), 128-wide inputs and states, reset-after (`--cell gru`), every row as long as the batch.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from grutext.fast import native, scan

SHAPES = ((32, 10), (16, 30), (16, 264))  # [B, T]: sst2-like sentences, short texts, imdb-like reviews
WIDTH = 128


def weights(batch: int, steps: int) -> tuple[torch.Tensor, ...]:
    return (
        torch.randn(batch, steps, WIDTH, requires_grad=True),
        (torch.randn(3 * WIDTH, WIDTH) * 0.1).requires_grad_(),
        (torch.randn(3 * WIDTH) * 0.1).requires_grad_(),
        (torch.randn(3 * WIDTH, WIDTH) * 0.1).requires_grad_(),
        (torch.randn(3 * WIDTH) * 0.1).requires_grad_(),
    )


def median_ms(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    if native.kernel() is None:
        raise SystemExit("Error: the native kernel is not built here (see the warning above)")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| batch [B, T] | TorchScript forward / backward ms | native forward / backward ms |\n|---|---|---|")
    for batch, steps in SHAPES:
        a, b = weights(batch, steps), weights(batch, steps)
        lengths = torch.full((batch,), steps)
        runs = {
            "script": lambda a=a, b=b: scan.pair_scan(True, a, b),  # type: ignore[arg-type]
            "native": lambda a=a, b=b, n=lengths: native.pair_scan(True, (a[0], n, *a[1:]), (b[0], n, *b[1:])),  # type: ignore[arg-type]
        }
        cells = []
        for run in runs.values():

            def both(run: Callable[[], tuple[torch.Tensor, torch.Tensor]] = run) -> None:
                out = run()
                (out[0].sum() + out[1].sum()).backward()  # type: ignore[no-untyped-call]

            rounds = 7 if steps > 100 else 31
            forward = median_ms(run, rounds)
            cells.append(f"{forward:.2f} / {median_ms(both, rounds) - forward:.2f}")
        print(f"| [{batch}, {steps}] | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
