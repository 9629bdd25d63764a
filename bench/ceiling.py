"""How fast can any GRU train here? torch's own nn.GRU, forward + backward on full padded batches, in GFLOP/s.

    python bench/ceiling.py

The issue's 40%-of-peak target counts 2*3*(E*H + H*H) FLOPs per token per direction, x3 with backward.
This measures torch.nn.GRU (one layer, one direction, embed 128, hidden 128, no padding at all, so every
position is a useful token) at sentence length (10 tokens, sst2's mean) and document length (256), at the
batch sizes a classifier trains with, on 1 and 2 intra-op threads, and prints tokens/s, GFLOP/s and the
share of the float32 matmul peak measured in the same process. It is the ceiling grutext's own numbers
sit under: no masking, no embedding, no optimizer, no data.
"""

from __future__ import annotations

import statistics
import time

import torch

E = H = 128
FLOPS_PER_TOKEN = 3 * 2 * 3 * (E * H + H * H)


def matmul_peak() -> float:
    torch.set_num_threads(2)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return best


def gru_tokens_per_s(batch: int, length: int, threads: int, seconds: float = 3.0) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    gru = torch.nn.GRU(E, H, batch_first=True)
    x = torch.randn(batch, length, E, requires_grad=True)
    runs: list[float] = []
    for _ in range(3):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            out, _ = gru(x)
            out.sum().backward()
            steps += 1
        runs.append(steps * batch * length / (time.perf_counter() - start))
    return statistics.median(runs)


def main() -> None:
    peak = matmul_peak()
    print(f"float32 matmul peak (2 threads, 2048x2048): {peak:.0f} GFLOP/s")
    print("| tokens per text | batch | threads | tokens/s | GFLOP/s | % of peak |")
    print("|---:|---:|---:|---:|---:|---:|")
    for length in (10, 256):
        for batch in (32, 64):
            for threads in (1, 2):
                tok_s = gru_tokens_per_s(batch, length, threads)
                gflops = tok_s * FLOPS_PER_TOKEN / 1e9
                print(f"| {length} | {batch} | {threads} | {tok_s:,.0f} | {gflops:.1f} | {100 * gflops / peak:.0f}% |")


if __name__ == "__main__":
    main()
