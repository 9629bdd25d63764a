"""Where the ONNX engine's predict time goes: tokenizing, the graph (per operator), and the rest.

    python bench/probes/onnx_profile.py --model models/sst2 --data DATA/sst2 --lines 20000

In-process, one intra-op thread and one batch at a time, so the shares add up: it tokenizes the test texts
(repeated up to --lines) as the engine does, runs the engine's batches through an onnxruntime session with
profiling on, and turns the records into predictions and output lines. Prints seconds per stage and each
operator's share of the graph's kernel time. A floor for the whole command follows: the engine cannot be faster
than its recurrent operator alone. Last, a bare GRU node (the model's hidden size and directions, batch
128 x 21 steps) with the model's input width against 8 inputs: how much of the operator is the input projection.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def bare_gru_tokens_per_s(hidden: int, inputs: int, directions: int, rounds: int = 5) -> float:
    """Median tokens/s of a lone GRU node, one thread."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((directions, 3 * hidden, width), dtype=np.float32) * 0.1, name)
        for name, width in (("W", inputs), ("R", hidden))
    ]
    weights.append(numpy_helper.from_array(np.zeros((directions, 6 * hidden), np.float32), "B"))
    node = helper.make_node(
        "GRU",
        ["X", "W", "R", "B", "L"],
        ["Y"],
        hidden_size=hidden,
        direction="bidirectional" if directions == 2 else "forward",
        linear_before_reset=1,
    )
    graph = helper.make_graph(
        [node],
        "bare",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None, inputs]),
            helper.make_tensor_value_info("L", TensorProto.INT32, [None]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        weights,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    steps, batch = 21, 128
    feed = {"X": rng.random((steps, batch, inputs), dtype=np.float32), "L": np.full(batch, steps, np.int32)}
    session.run(None, feed)
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(20):
            session.run(None, feed)
        rates.append(20 * steps * batch / (time.perf_counter() - start))
    return sorted(rates)[rounds // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="a folder with test.jsonl")
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()

    import onnxruntime as ort

    from grutext.batching import inference_batches, pad, pad_grams
    from grutext.onnx_engine import OnnxPredictor
    from grutext.prediction import format_prediction, predictions
    from grutext.tokenizer import encode_inputs

    rows = [json.loads(line) for line in (args.data / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [" ".join(r["text"].split()) for r in rows]
    texts = (texts * (args.lines // len(texts) + 1))[: args.lines]
    engine = OnnxPredictor.load(args.model)
    stages: dict[str, float] = {}

    start = time.perf_counter()
    ids, grams = encode_inputs(engine.meta.tokenizer, texts, engine.meta.tokenizer_config, engine.meta.model_config)
    stages["tokenize (and n-grams)"] = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(args.model / "model.onnx"), options, providers=["CPUExecutionProvider"])
        probs = np.empty((len(ids), len(engine.labels)), dtype=np.float32)
        start = time.perf_counter()
        for index in inference_batches(ids, engine.batch_size):
            batch, lengths = pad(ids, index)
            feed = {"ids": batch, "lengths": lengths}
            if grams is not None:  # the words' character n-grams
                feed["grams"], feed["gram_counts"] = pad_grams(grams, index)
            probs[index] = session.run(None, feed)[0]
        stages["graph (padding included)"] = time.perf_counter() - start
        events = json.loads(Path(session.end_profiling()).read_text())

    start = time.perf_counter()
    lines = "".join(format_prediction(p, "label") + "\n" for p in predictions(engine.labels, probs, engine.decision))
    stages["records and lines"] = time.perf_counter() - start
    assert lines.count("\n") == len(texts)

    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    kernel = sum(per_op.values())
    total = sum(stages.values())
    tokens = sum(len(r) for r in ids)
    print(f"{len(texts):,} lines, {tokens / len(texts):.1f} tokens a line, one thread:")
    for name, seconds in stages.items():
        print(f"  {name:<26} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")
    print("graph kernel time by operator:")
    for op, micros in per_op.most_common(10):
        print(f"  {op:<26} {micros / 1e6:7.2f} s  {100 * micros / kernel:5.1f}%")
    recurrent = sum(per_op[op] for op in ("GRU", "LSTM")) / 1e6
    print(
        f"the recurrent operator alone: {len(texts) / recurrent:,.0f} lines/s a thread; everything: "
        f"{len(texts) / total:,.0f} lines/s a thread ({100 * recurrent / total:.0f}% of the time in the operator)"
    )

    model = engine.meta.config["model"]
    hidden, width, directions = model["hidden_size"], model["embed_dim"], 2 if model["bidirectional"] else 1
    full, narrow = (bare_gru_tokens_per_s(hidden, n, directions) for n in (width, 8))
    print(f"a bare GRU node: {width} inputs {full:,.0f} tokens/s, 8 inputs {narrow:,.0f} tokens/s")


if __name__ == "__main__":
    main()
