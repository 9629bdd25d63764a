"""Speed benchmark: grutext against a tutorial GRU and fastText, in one run, on real data. Writes BENCHMARKS.md.

    make bench DATA=DIR                 # = python bench/bench.py --data DATA
    python bench/bench.py --datasets sst2 --skip-reference

Per dataset it measures, each in a fresh process where it matters:
  * grutext's whole `train` command (one epoch, embed 128 / hidden 128 / 1 layer / one direction, as the
    reference) and with default settings: accuracy, wall time, train tokens/s (real, unpadded tokens),
    achieved GFLOP/s (2*3*(E*H + H*H) FLOPs per token per direction forward, x3 for forward+backward),
    peak RSS, checkpoint size;
  * `grutext predict` over the test texts: lines/s, and the latency of one line through a pipe;
  * `grutext compress` at its defaults: sizes, test accuracy and predict speed of the compressed checkpoint;
  * predict's words/s on lines of GloVe's text file (DATA/vectors/, words the vocabulary lacks) against the
    test texts;
  * the tutorial GRU's epoch (bench/reference.py) and fastText (if `fasttext` imports).
Machine-wide: float32 matmul peak (2 threads), `grutext --help` start-up, and predict's RSS at 20k and
200k lines of a 1M-line stdin stream.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from results import fasttext_tokens, read_split

GRUTEXT = [sys.executable, "-m", "grutext"]
REFERENCE_ARGS = ["--epochs", "1", "--embed-dim", "128", "--hidden-size", "128", "--layers", "1", "--no-bidirectional"]


def read_jsonl(folder: Path, split: str) -> list[dict[str, Any]]:
    rows = read_split(folder, split)
    if rows is None:
        raise SystemExit(f"{folder} has no {split}.jsonl")
    return rows


def machine() -> dict[str, str]:
    import tokenizers
    import torch

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    if Path("/proc/meminfo").exists():
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
    }
    try:
        from importlib.metadata import version

        import fasttext  # noqa: F401

        info["fasttext"] = version("fasttext-wheel")
    except Exception:
        info["fasttext"] = "not installed"
    return info


def matmul_peak() -> float:
    """Best float32 GFLOP/s of 2048^2 matmuls with 2 threads, in a fresh process."""
    code = (
        "import torch,time;torch.set_num_threads(2);a=torch.randn(2048,2048);b=torch.randn(2048,2048);"
        "[a@b for _ in range(3)];best=0\n"
        "for _ in range(10):\n t=time.perf_counter();[a@b for _ in range(5)]\n"
        " best=max(best,5*2*2048**3/(time.perf_counter()-t))\n"
        "print(best/1e9)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def run_with_rss(cmd: list[str], stdin: bytes | None = None) -> tuple[float, int, bytes, bytes]:
    """Wall seconds, peak RSS (KiB, from wait4) and output of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
    readers = [
        threading.Thread(target=lambda: out_chunks.append(proc.stdout.read())),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err_chunks.append(proc.stderr.read())),
    ]  # type: ignore[union-attr]
    for r in readers:
        r.start()
    if stdin is not None:
        proc.stdin.write(stdin)
    proc.stdin.close()
    for r in readers:
        r.join()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{b''.join(err_chunks).decode()[-3000:]}")
    return wall, int(usage.ru_maxrss), b"".join(out_chunks), b"".join(err_chunks)


def flops_per_token(model: dict[str, Any]) -> float:
    """Useful training FLOPs per real token: 2*3*(in*H + H*H) per direction and layer forward, x3 with backward."""
    H, dirs = model["hidden_size"], 2 if model["bidirectional"] else 1
    total, size = 0.0, model["embed_dim"]
    for _ in range(model["layers"]):
        total += dirs * 2 * 3 * (size * H + H * H)
        size = H * dirs
    return 3 * total


def grutext_run(folder: Path, out: Path, args: list[str]) -> dict[str, Any]:
    cmd = [*GRUTEXT, "train", str(folder), "--output", str(out), "--overwrite", "--json", *args]
    wall, rss, stdout, _ = run_with_rss(cmd)
    metrics = json.loads(stdout)
    config = json.loads((out / "config.json").read_text())
    history = metrics["history"]
    tokens = sum(h["tokens_per_s"] * h["seconds"] for h in history)
    loop_seconds = sum(h["seconds"] for h in history)
    tok_s = tokens / loop_seconds
    test = metrics["test"]
    return {
        "args": " ".join(args) or "(defaults)",
        "accuracy": test.get("accuracy", test.get("micro_f1")),
        "macro_f1": test["macro_f1"],
        "wall_seconds": wall,
        "epochs": len(history),
        "train_tokens_per_s": tok_s,
        "gflops": tok_s * flops_per_token(config["model"]) / 1e9,
        "peak_rss_mib": rss / 1024,
        "model_mib": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20,
    }


def predict_speed(model: Path, texts: list[str], tmp: Path, engine: str = "auto") -> dict[str, float]:
    """Whole-command lines/s over at least 50,000 lines, and the median of 5 one-line runs through a pipe."""
    lines = [" ".join(t.split()) for t in texts]
    reps = max(1, 50_000 // len(lines) + (50_000 % len(lines) > 0))
    path = tmp / "predict.txt"
    path.write_text("\n".join(lines * reps) + "\n", encoding="utf-8")
    command = [*GRUTEXT, "predict", "--model", str(model), "--engine", engine]
    wall, _, out, _ = run_with_rss([*command, str(path)])
    assert out.count(b"\n") == len(lines) * reps
    latencies = [run_with_rss(command, (lines[0] + "\n").encode())[0] for _ in range(5)]
    return {
        "lines_per_s": len(lines) * reps / wall,
        "lines": len(lines) * reps,
        "one_line_seconds": statistics.median(latencies),
    }


def compression_check(model: Path, folder: Path, tmp: Path, texts: list[str]) -> dict[str, Any]:
    """`grutext compress` at its defaults: sizes (the checkpoint, the compressed one, and the checkpoint as it
    was when model.onnx held a second copy of the weights), test accuracy of both, and the compressed one's
    predict speed."""
    small = tmp / f"{model.name}-small"
    subprocess.run([*GRUTEXT, "compress", "-m", str(model), "-o", str(small), "--overwrite"], check=True)

    def size(root: Path) -> int:
        return sum(p.stat().st_size for p in root.iterdir() if p.is_file())

    def accuracy(root: Path) -> float:
        done = subprocess.run(
            [*GRUTEXT, "evaluate", "-m", str(root), str(folder), "--split", "test", "--json"],
            check=True,
            capture_output=True,
        )
        return float(json.loads(done.stdout)["accuracy"])

    return {
        "bytes": size(model),
        "bytes_weights_twice": size(model) + (model / "model.safetensors").stat().st_size,
        "compressed_bytes": size(small),
        "accuracy": accuracy(model),
        "compressed_accuracy": accuracy(small),
        "predict": predict_speed(small, texts, tmp, "onnx"),
    }


def unknown_words_speed(model: Path, vectors: Path, texts: list[str], tmp: Path, lines: int = 20_000) -> dict[str, Any]:
    """predict's whitespace-separated words/s on the first `lines` lines of a word-vector text file (a word,
    then numbers: almost nothing in the vocabulary) against the test texts, whole command, in turn."""
    import gzip

    with gzip.open(vectors, "rt", encoding="utf-8") as fh:
        odd = [next(fh).strip() for _ in range(lines)]
    from grutext.artifacts import read_meta
    from grutext.tokenizer import encode

    meta = read_meta(model)
    out: dict[str, Any] = {"source": vectors.name, "lines": lines}
    test = [" ".join(t.split()) for t in texts]
    test = (test * (lines // len(test) + 1))[:lines]  # as many lines: start-up weighs the same on both
    for key, chosen in (("unknown", odd), ("test", test)):
        tokens = sum(len(row) for row in encode(meta.tokenizer, chosen, meta.tokenizer_config))
        path = tmp / f"{key}.txt"
        path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
        wall, _, stdout, _ = run_with_rss([*GRUTEXT, "predict", "--model", str(model), str(path)])
        assert stdout.count(b"\n") == len(chosen)
        out[f"{key}_words_per_s"] = sum(len(t.split()) for t in chosen) / wall
        out[f"{key}_tokens_per_s"] = tokens / wall  # the model's tokens (the tokenizer splits at punctuation)
        out[f"{key}_lines"] = len(chosen)
    return out


def int8_check(model: Path, test: list[dict[str, Any]], tmp: Path, rounds: int = 3) -> dict[str, float]:
    """onnxruntime's dynamic int8 quantization of model.onnx: in-process speed (median of interleaved rounds)
    and accuracy against fp32."""
    import numpy as np
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from grutext.onnx_engine import OnnxPredictor

    fp32 = OnnxPredictor.load(model)
    quantized = tmp / "int8.onnx"
    quantize_dynamic(str(model / "model.onnx"), str(quantized), weight_type=QuantType.QInt8)
    int8 = OnnxPredictor.load(model)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    int8.session = ort.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])
    texts = [r["text"] for r in test]
    truth = [r["label"] for r in test]
    out: dict[str, float] = {}
    engines = (("fp32", fp32), ("int8", int8))
    for _, engine in engines:
        engine.predict_proba(texts[:256])
    seconds: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(rounds):  # interleaved: one pass each, fp32 first, measured an order effect of 30%
        for name, engine in engines:
            start = time.perf_counter()
            probs = engine.predict_proba(texts)
            seconds[name].append(time.perf_counter() - start)
            labels = [engine.labels[i] for i in np.asarray(probs).argmax(axis=1)]
            out[f"{name}_accuracy"] = sum(a == b for a, b in zip(labels, truth, strict=True)) / len(truth)
    for name, runs in seconds.items():
        out[f"{name}_lines_per_s"] = len(texts) / statistics.median(runs)
    out["rounds"] = rounds
    nodes = [n.op_type for n in __import__("onnx").load(str(quantized)).graph.node]
    out["int8_quantized_nodes"] = sum(op in ("MatMulInteger", "DynamicQuantizeLinear", "ConvInteger") for op in nodes)
    out["fp32_gru_nodes"] = sum(op in ("GRU", "LSTM") for op in nodes)
    return out


def serve_load(model: Path, texts: list[str], requests: int = 4000, concurrency: int = 16) -> dict[str, Any]:
    """`grutext serve` on a free port: one text per request, `requests` of them at `concurrency` at once, and
    500 one at a time; throughput, p50/p99 latency, errors."""
    import http.client
    import socket
    from concurrent.futures import ThreadPoolExecutor

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [*GRUTEXT, "serve", "--model", str(model), "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    local = threading.local()

    def post(text: str) -> tuple[float, bool]:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = json.dumps({"texts": [text]}).encode()
        start = time.perf_counter()
        try:
            local.conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            response = local.conn.getresponse()
            ok = response.status == 200 and len(json.loads(response.read())["predictions"]) == 1
        except (OSError, http.client.HTTPException, ValueError):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            ok = False
        return time.perf_counter() - start, ok

    try:
        for _ in range(300):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
                break
            except OSError:
                time.sleep(0.05)
        results: dict[str, Any] = {}
        for name, count, workers in (("concurrent", requests, concurrency), ("sequential", 500, 1)):
            batch = [texts[i % len(texts)] for i in range(count)]
            start = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                done = list(pool.map(post, batch))
            wall = time.perf_counter() - start
            latency = sorted(d for d, _ in done)
            results[name] = {
                "requests": count,
                "concurrency": workers,
                "requests_per_s": count / wall,
                "p50_ms": 1000 * latency[len(latency) // 2],
                "p99_ms": 1000 * latency[int(len(latency) * 0.99) - 1],
                "errors": sum(not ok for _, ok in done),
            }
        return results
    finally:
        server.send_signal(__import__("signal").SIGTERM)
        server.wait(timeout=60)


def ddp_throughput(folder: Path, tmp: Path, steps: int = 300) -> dict[str, Any]:
    """Training tokens/s over `steps` steps: 2 torchrun ranks of 1 thread each (reference backend, the one
    data-parallel runs use) against 1 process of 2 threads (the fast backend, the default; and the
    reference backend)."""
    args = ["--epochs", "1", "--max-steps", str(steps), "--json"]
    out: dict[str, Any] = {}
    runs = {
        "1 process, fast backend (scans on 2 cores)": ([*GRUTEXT, "train"], {}, []),
        "1 process x 2 threads, reference backend": ([*GRUTEXT, "train"], {}, ["--backend", "reference"]),
        "2 ranks x 1 thread, reference backend (torchrun, gloo)": (
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "grutext",
             "train"],
            {"OMP_NUM_THREADS": "1"},
            ["--batch-size", "16", "--max-steps", str(steps)],
        ),
    }  # fmt: skip
    for name, (command, env, extra) in runs.items():
        target = tmp / f"ddp-{len(out)}"
        cmd = [*command, str(folder), "--output", str(target), "--overwrite", *args, *extra]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        history = json.loads((target / "metrics.json").read_text())["history"]
        tokens = sum(h["tokens_per_s"] * h["seconds"] for h in history)
        seconds = sum(h["seconds"] for h in history)
        out[name] = {"tokens_per_s": tokens / seconds, "wall_seconds": time.perf_counter() - start, "steps": steps}
    return out


def fasttext_run(train: list[dict[str, Any]], test: list[dict[str, Any]], tmp: Path) -> dict[str, float] | None:
    try:
        import fasttext
    except ImportError:
        return None
    path = tmp / "ft.txt"
    path.write_text("".join(f"__label__{r['label']} {fasttext_tokens(r['text'])}\n" for r in train), encoding="utf-8")
    start = time.perf_counter()
    model = fasttext.train_supervised(str(path), epoch=5, lr=0.1, wordNgrams=2, verbose=0, thread=2, seed=13)
    seconds = time.perf_counter() - start
    texts = [fasttext_tokens(r["text"]) for r in test]
    start = time.perf_counter()
    predicted, _ = model.predict(texts, k=1)
    predict_seconds = time.perf_counter() - start
    accuracy = sum(p[0][9:] == r["label"] for p, r in zip(predicted, test, strict=True)) / len(test)
    return {"accuracy": accuracy, "train_seconds": seconds, "lines_per_s": len(texts) / predict_seconds}


def reference_run(train: list[dict[str, Any]], test: list[dict[str, Any]]) -> dict[str, Any]:
    code = (
        f"import json,sys;sys.path.insert(0,{str(Path(__file__).parent)!r});from reference import run_reference;"
        "d=json.load(sys.stdin);print(json.dumps(run_reference(d['train'],d['test'])))"
    )
    payload = json.dumps(
        {"train": [(r["text"], r["label"]) for r in train], "test": [(r["text"], r["label"]) for r in test]}
    ).encode()
    _wall, rss, out, _ = run_with_rss([sys.executable, "-c", code], payload)
    return {**json.loads(out), "peak_rss_mib": rss / 1024}


def startup_seconds() -> float:
    return statistics.median(run_with_rss([*GRUTEXT, "--help"])[0] for _ in range(5))


def streaming_rss(model: Path, total: int = 1_000_000) -> dict[str, float]:
    """Feed `total` lines to predict through a pipe; read its RSS when 20k and 200k answers have come back."""
    proc = subprocess.Popen(
        [*GRUTEXT, "predict", "--model", str(model)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def feed() -> None:
        try:
            for i in range(total):
                proc.stdin.write(f"line {i} a rather ordinary sentence about a film\n".encode())  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    rss: dict[str, float] = {}
    count = 0
    for _ in proc.stdout:
        count += 1
        if count in (20_000, 200_000, total):
            status = Path(f"/proc/{proc.pid}/status").read_text()
            kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
            rss[f"rss_mib_at_{count}"] = kb / 1024
    proc.wait()
    rss["lines_out"] = count
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <name>/{train,validation,test}.jsonl")
    parser.add_argument("--datasets", default="sst2,imdb")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--skip-reference", action="store_true", help="skip the (slow) tutorial GRU")
    parser.add_argument("--defaults", default="sst2", help="datasets also trained with default settings")
    parser.add_argument("--stream-lines", type=int, default=1_000_000, help="lines in the streaming test (>= 200k)")
    parser.add_argument("--serve", default="sst2", help="datasets whose model is load-tested behind grutext serve")
    parser.add_argument("--ddp", default="sst2,imdb", help="datasets for the data-parallel throughput comparison")
    parser.add_argument(
        "--ddp-steps",
        default="sst2=300,imdb=30",
        help="training steps per data-parallel run, per dataset (others: 300); the reference backend, which "
        "data-parallel runs use, takes minutes per step batch on imdb's long reviews",
    )
    parser.add_argument("--render", type=Path, help="only rewrite --out from an earlier run's bench/results/bench.json")
    args = parser.parse_args()
    if args.render:
        report = json.loads(args.render.read_text())
        args.out.write_text(render(report, report.get("argv", "")), encoding="utf-8")
        return

    report: dict[str, Any] = {"machine": machine(), "matmul_peak_gflops": matmul_peak(), "datasets": {}}
    # The data folder is this machine's: the page names it DATA, as the Makefile does.
    report["argv"] = " ".join("DATA" if arg == str(args.data) else arg for arg in sys.argv[1:])
    report["startup_seconds"] = startup_seconds()
    print(json.dumps(report), file=sys.stderr, flush=True)
    defaults = set(args.defaults.split(","))
    serve_on, ddp_on = set(args.serve.split(",")), set(args.ddp.split(","))
    ddp_steps = {k: int(v) for k, v in (item.split("=") for item in args.ddp_steps.split(",") if item)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in args.datasets.split(","):
            folder = args.data / name
            train, test = read_jsonl(folder, "train"), read_jsonl(folder, "test")
            row: dict[str, Any] = {"one_epoch": grutext_run(folder, tmp / f"{name}-1", REFERENCE_ARGS)}
            with_defaults = name in defaults
            if with_defaults:
                row["defaults"] = grutext_run(folder, tmp / f"{name}-d", [])
            model = tmp / (f"{name}-d" if with_defaults else f"{name}-1")
            row["predict_model"] = "default settings" if with_defaults else "the one-epoch model"
            row["predict"] = predict_speed(model, [r["text"] for r in test], tmp, "onnx")
            row["predict_torch"] = predict_speed(model, [r["text"] for r in test], tmp, "torch")
            row["int8"] = int8_check(model, test, tmp)
            row["compress"] = compression_check(model, folder, tmp, [r["text"] for r in test])
            vectors = args.data / "vectors" / "glove.6B.50d.100k.txt.gz"
            if vectors.is_file():
                row["unknown_words"] = unknown_words_speed(model, vectors, [r["text"] for r in test], tmp)
            if name in serve_on:
                row["serve"] = serve_load(model, [r["text"] for r in test])
            if name in ddp_on:
                row["ddp"] = ddp_throughput(folder, tmp, ddp_steps.get(name, 300))
            row["fasttext"] = fasttext_run(train, test, tmp)
            if not args.skip_reference:
                row["reference"] = reference_run(train, test)
            report["datasets"][name] = row
            print(json.dumps({name: row}), file=sys.stderr, flush=True)
        first = args.datasets.split(",")[0]
        stream_model = tmp / (f"{first}-d" if first in defaults else f"{first}-1")
        report["streaming"] = streaming_rss(stream_model, args.stream_lines)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/bench.json").write_text(json.dumps(report, indent=2))
    args.out.write_text(render(report, report["argv"]), encoding="utf-8")
    print(args.out.read_text())


def render(r: dict[str, Any], argv: str) -> str:
    m = r["machine"]
    peak = r["matmul_peak_gflops"]
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `python bench/bench.py {argv}` (`make bench`); every figure below comes from that one run.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}. Python {m['python']}, torch {m['torch']}, "
        f"tokenizers {m['tokenizers']}, fastText {m['fasttext']}.",
        f"Float32 matmul peak (2 threads, 2048x2048): **{peak:.0f} GFLOP/s**. "
        f"`grutext --help` start-up: **{r['startup_seconds']:.2f} s** (median of 5).",
        "",
    ]
    for name, row in r["datasets"].items():
        lines += [
            f"## {name}",
            "",
            "| run | accuracy | wall time | train tokens/s | GFLOP/s (% of peak) | peak RSS | model size |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for key in ("one_epoch", "defaults"):
            if key in row:
                g = row[key]
                lines.append(
                    f"| grutext train {g['args']} | {g['accuracy']:.4f} | {g['wall_seconds']:.1f} s "
                    f"({g['epochs']} epoch{'s' if g['epochs'] > 1 else ''}) | {g['train_tokens_per_s']:,.0f} "
                    f"| {g['gflops']:.1f} "
                    f"({100 * g['gflops'] / peak:.0f}%) | {g['peak_rss_mib']:.0f} MiB | {g['model_mib']:.1f} MiB |"
                )
        if "reference" in row:
            ref = row["reference"]
            lines.append(
                f"| tutorial GRU, one epoch (bench/reference.py) | {ref['accuracy']:.4f} "
                f"| {ref['epoch_seconds']:.1f} s "
                f"| {ref['real_tokens_per_s']:,.0f} real ({ref['padded_tokens_per_s']:,.0f} padded) | | "
                f"{ref['peak_rss_mib']:.0f} MiB | |"
            )
        if row.get("fasttext"):
            ft = row["fasttext"]
            lines.append(
                f"| fastText (wordNgrams 2, 5 epochs) | {ft['accuracy']:.4f} | {ft['train_seconds']:.1f} s | | | | |"
            )
        lines.append("")
        p, t = row["predict"], row.get("predict_torch")
        lines.append(f"predict ({row['predict_model']}, whole command, start-up included, {p['lines']:,} test lines):")
        lines.append("")
        lines.append("| engine | lines/s | one line through a pipe (median of 5) |")
        lines.append("|---|---:|---:|")
        lines.append(f"| onnx (the default) | **{p['lines_per_s']:,.0f}** | **{p['one_line_seconds']:.2f} s** |")
        if t:
            lines.append(f"| torch | {t['lines_per_s']:,.0f} | {t['one_line_seconds']:.2f} s |")
            lines.append("")
            lines.append(
                f"The ONNX engine runs at **{p['lines_per_s'] / t['lines_per_s']:.1f}x** the torch engine's lines/s."
            )
        if row.get("fasttext"):
            lines.append(f"fastText predict: {row['fasttext']['lines_per_s']:,.0f} lines/s (in-process).")
        if row.get("int8"):
            q = row["int8"]
            lines.append("")
            lines.append(
                "int8 (onnxruntime `quantize_dynamic`, in-process, "
                + (f"median of {q['rounds']} interleaved rounds" if "rounds" in q else "one pass each, fp32 first")
                + f"): {q['int8_lines_per_s']:,.0f} lines/s and "
                f"accuracy {q['int8_accuracy']:.4f}, against fp32 {q['fp32_lines_per_s']:,.0f} lines/s and "
                f"{q['fp32_accuracy']:.4f}; the quantized graph still runs {q['fp32_gru_nodes']} recurrent node(s) in "
                "fp32."
            )
        if row.get("compress"):
            c = row["compress"]
            lines += [
                "",
                f"`grutext compress` (defaults): {c['compressed_bytes'] / 1e6:.2f} MB against "
                f"{c['bytes'] / 1e6:.2f} MB "
                f"(**{c['bytes'] / c['compressed_bytes']:.1f}x** smaller; {c['bytes_weights_twice'] / 1e6:.2f} MB with "
                f"the weights stored twice, as before, **{c['bytes_weights_twice'] / c['compressed_bytes']:.1f}x**); "
                f"test accuracy {c['compressed_accuracy']:.4f} against {c['accuracy']:.4f}; predict "
                f"{c['predict']['lines_per_s']:,.0f} lines/s, one line {c['predict']['one_line_seconds']:.2f} s.",
            ]
        if row.get("unknown_words"):
            u = row["unknown_words"]
            lines += [
                "",
                f"Words the vocabulary lacks ({u['unknown_lines']:,} lines of {u['source']}, whole command): "
                f"{u['unknown_words_per_s']:,.0f} words/s against {u['test_words_per_s']:,.0f} on {u['test_lines']:,} "
                f"test lines (**{u['unknown_words_per_s'] / u['test_words_per_s']:.2f}x**; words split at spaces); "
                f"in the model's tokens {u['unknown_tokens_per_s']:,.0f} against "
                f"{u['test_tokens_per_s']:,.0f} tokens/s "
                f"(**{u['unknown_tokens_per_s'] / u['test_tokens_per_s']:.2f}x**).",
            ]
        if row.get("serve"):
            lines += ["", "`grutext serve` (one text per request; every request answered, errors counted):", ""]
            lines.append("| load | requests | requests/s | p50 latency | p99 latency | errors |")
            lines.append("|---|---:|---:|---:|---:|---:|")
            for key, v in row["serve"].items():
                lines.append(
                    f"| {key}, {v['concurrency']} at a time | {v['requests']:,} | {v['requests_per_s']:,.0f} "
                    f"| {v['p50_ms']:.1f} ms | {v['p99_ms']:.1f} ms | {v['errors']} |"
                )
        if row.get("ddp"):
            steps = next(iter(row["ddp"].values())).get("steps", 300)
            lines += ["", f"Data-parallel throughput ({steps} training steps, default settings, real tokens/s):", ""]
            lines.append("| run | train tokens/s | wall time |")
            lines.append("|---|---:|---:|")
            for key, v in row["ddp"].items():
                lines.append(f"| {key} | {v['tokens_per_s']:,.0f} | {v['wall_seconds']:.1f} s |")
        if "reference" in row:
            speedup = row["reference"]["epoch_seconds"] / row["one_epoch"]["wall_seconds"]
            lines.append(
                f"\nThe whole `grutext train` command (one epoch) runs at **{speedup:.1f}x** the speed of the "
                "tutorial GRU's epoch alone."
            )
        lines.append("")
    s = r["streaming"]
    lines += [
        "## Streaming",
        "",
        f"`grutext predict` over a {s['lines_out']:,}-line stdin stream: RSS {s['rss_mib_at_20000']:.0f} MiB at 20k "
        f"lines, {s['rss_mib_at_200000']:.0f} MiB at 200k lines "
        f"({100 * (s['rss_mib_at_200000'] / s['rss_mib_at_20000'] - 1):+.1f}%).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
