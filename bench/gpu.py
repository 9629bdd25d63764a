"""Checks for a machine with a CUDA GPU, in one short script (about two minutes): the reference backend's
cuDNN GRU, NCCL data-parallel training, and onnxruntime's CUDA provider where it is installed.

    python bench/gpu.py --out gpu-report.json

1. The model on CUDA computes what it computes on the CPU (every cell, both directions, two layers): logits
   within 1e-4.
2. `grutext train --device cuda` on generated sentiment data reaches a sensible validation score, and its
   checkpoint predicts on the CPU (the torch and ONNX engines) the same labels.
3. `torchrun --nproc-per-node 2 -m grutext train --device cuda` with NCCL, when two GPUs are there (else one
   rank per GPU that exists): the run finishes, and its checkpoint records the world size.
4. Throughput of a training epoch on the GPU against the CPU's fast backend, same data.
Every check prints one line and goes into the JSON report; the exit status is 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def write_data(root: Path, n: int = 6000) -> Path:
    rng = random.Random(0)
    pos, neg = ["superb", "wonderful", "moving", "great"], ["dreadful", "dull", "awful", "tedious"]
    filler = ["the", "film", "was", "plot", "cast", "and", "really", "a", "story", "with"]
    for split, size in (("train", n), ("validation", n // 10), ("test", n // 10)):
        rows = []
        for i in range(size):
            label = "pos" if i % 2 else "neg"
            words = [*rng.choices(filler, k=rng.randint(5, 40)), rng.choice(pos if label == "pos" else neg)]
            rng.shuffle(words)
            rows.append(json.dumps({"text": " ".join(words), "label": label}))
        (root / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def check_parity() -> dict[str, Any]:
    import torch

    from grutext.backend import prepare
    from grutext.batching import collate
    from grutext.config import DataShape, ModelConfig
    from grutext.model import GRUClassifier

    worst = 0.0
    texts = [[random.randint(2, 49) for _ in range(n)] for n in (3, 17, 9, 1, 30)]
    batch = collate(texts, range(len(texts)))
    for cell in ("gru", "cho2014", "lstm"):
        torch.manual_seed(0)
        cfg = ModelConfig(embed_dim=16, hidden_size=12, layers=2, cell=cell, dropout=0.0)
        model = GRUClassifier(cfg.resolved_for(False, "bpe"), DataShape(50, 3)).eval()
        cpu = prepare(model, torch.device("cpu"), "reference")
        with torch.no_grad():
            expected = cpu(batch.ids, batch.lengths)
            gpu = prepare(model, torch.device("cuda"), "reference")
            got = gpu(batch.ids.cuda(), batch.lengths.cuda()).cpu()
        worst = max(worst, float((got - expected).abs().max()))
    return {"ok": worst < 1e-4, "max_abs_difference": worst}


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, float]:
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=900)
    return done.returncode, done.stderr[-2000:], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu-report.json"))
    args = parser.parse_args()
    import torch

    report: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to check")
        args.out.write_text(json.dumps(report, indent=2))
        return
    report["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    report["parity"] = check_parity()
    print(f"1. CUDA vs CPU logits: max difference {report['parity']['max_abs_difference']:.2e}")
    grutext = [sys.executable, "-m", "grutext"]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp))
        small = ["--epochs", "2", "--embed-dim", "64", "--hidden-size", "64"]
        code, err, gpu_s = run([*grutext, "train", str(data), "-o", f"{tmp}/gpu", "--device", "cuda", *small, "--json"])
        cpu_code, _, cpu_s = run([*grutext, "train", str(data), "-o", f"{tmp}/cpu", "--device", "cpu", *small])
        labels = {}
        for engine in ("torch", "onnx"):
            done = subprocess.run(
                [*grutext, "predict", "-m", f"{tmp}/gpu", "--engine", engine],
                input=(data / "test.jsonl").read_text(),
                capture_output=True,
                text=True,
            )
            labels[engine] = done.stdout
        report["train_cuda"] = {
            "ok": code == 0 and labels["torch"] == labels["onnx"] and labels["torch"].count("\n") > 0,
            "seconds_gpu": round(gpu_s, 1),
            "seconds_cpu": round(cpu_s, 1) if cpu_code == 0 else None,
            "stderr": err if code else "",
        }
        verdict = "ok" if report["train_cuda"]["ok"] else "FAILED"
        print(f"2. train --device cuda: {verdict} ({gpu_s:.1f} s; CPU {cpu_s:.1f} s)")
        ranks = min(2, torch.cuda.device_count())
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
        code, err, nccl_s = run(
            [*torchrun, "-m", "grutext", "train", str(data), "-o", f"{tmp}/nccl", "--device", "cuda", *small]
        )
        world = (
            json.loads((Path(tmp) / "nccl" / "config.json").read_text())["train"]["world_size"] if code == 0 else None
        )
        report["nccl"] = {
            "ok": code == 0 and world == ranks,
            "ranks": ranks,
            "seconds": round(nccl_s, 1),
            "stderr": err if code else "",
        }
        print(f"3. torchrun NCCL, {ranks} rank(s): {'ok' if report['nccl']['ok'] else 'FAILED'} ({nccl_s:.1f} s)")
    try:
        import onnxruntime as ort

        report["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        report["onnxruntime_providers"] = []
    print(f"4. onnxruntime providers: {report['onnxruntime_providers']}")
    args.out.write_text(json.dumps(report, indent=2))
    failed = [k for k in ("parity", "train_cuda", "nccl") if not report[k]["ok"]]
    print("all checks passed" if not failed else f"FAILED: {', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
