"""Would an int8 dynamically quantised predict path pay? Inference tokens/s of the default-size model on
sst2-like batches: grutext's fp32 scan, torch's fp32 nn.GRU, and torch's int8 dynamic nn.GRU + Linear.

    python bench/probes/quantize.py
"""

from __future__ import annotations

import time

import torch

from grutext.backend import prepare
from grutext.config import DataShape, ModelConfig
from grutext.model import GRUClassifier, run_layer


def tokens_per_s(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    with torch.inference_mode():
        for ids, lengths in batches[:3]:
            model(ids, lengths)
        start = time.perf_counter()
        for ids, lengths in batches:
            model(ids, lengths)
        seconds = time.perf_counter() - start
    return sum(int(lengths.sum()) for _, lengths in batches) / seconds


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = prepare(
        GRUClassifier(ModelConfig().resolved_for(False, "bpe"), DataShape(20000, 2)), torch.device("cpu"), "fast"
    ).eval()
    batches = []
    for length in (8, 12, 16, 24, 32, 48) * 10:
        batches.append((torch.randint(2, 20000, (256, length)), torch.full((256,), length)))
    scan = tokens_per_s(model, batches)
    model.encoder.runner = run_layer  # nn.GRU itself
    native = tokens_per_s(model, batches)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks its quantized tensors deprecated
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)
    int8 = tokens_per_s(quantized, batches)
    print(f"fp32 grutext scan: {scan:,.0f} tokens/s; fp32 nn.GRU: {native:,.0f}; int8 dynamic nn.GRU: {int8:,.0f}")


if __name__ == "__main__":
    main()
