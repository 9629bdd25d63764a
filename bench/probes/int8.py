"""Does onnxruntime's dynamic int8 quantization pay for a grutext model? Interleaved, in-process.

    python bench/probes/int8.py --model models/sst2 --data DATA/sst2 --texts 20000 --rounds 3

Quantizes the checkpoint's model.onnx with `quantize_dynamic` (int8 weights), then scores the same test texts
with the fp32 and the int8 graph in turn, `--rounds` times each (one intra-op thread each, as the ONNX engine
runs), and prints lines/s per round, the medians, both accuracies and the int8 graph's operators: the GRU or
LSTM operator is not quantized, so only the matmuls outside the recurrence can gain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="a folder with test.jsonl")
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from grutext.onnx_engine import OnnxPredictor

    rows = [json.loads(line) for line in (args.data / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = rows[: args.texts]
    texts = [r["text"] for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        quantized = Path(tmp) / "int8.onnx"
        quantize_dynamic(str(args.model / "model.onnx"), str(quantized), weight_type=QuantType.QInt8)
        ops = sorted({node.op_type for node in onnx.load(str(quantized)).graph.node})
        engines = {}
        for name, path in (("fp32", args.model / "model.onnx"), ("int8", quantized)):
            engine = OnnxPredictor.load(args.model)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            engine.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            engine.predict_proba(texts[:256])  # warm up
            engines[name] = engine
        seconds: dict[str, list[float]] = {name: [] for name in engines}
        accuracy: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, engine in engines.items():
                start = time.perf_counter()
                probs = engine.predict_proba(texts)
                seconds[name].append(time.perf_counter() - start)
                labels = [engine.labels[i] for i in np.asarray(probs).argmax(axis=1)]
                accuracy[name] = sum(a == r["label"] for a, r in zip(labels, rows, strict=True)) / len(rows)
    for name, runs in seconds.items():
        rates = ", ".join(f"{len(texts) / s:,.0f}" for s in runs)
        median = len(texts) / statistics.median(runs)
        print(f"{name}: {rates} lines/s (median {median:,.0f}), accuracy {accuracy[name]:.4f}")
    print(f"int8 graph operators: {', '.join(ops)}")


if __name__ == "__main__":
    main()
