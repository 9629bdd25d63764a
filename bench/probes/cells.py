"""Compare the recurrent cells (--cell gru|cho2014|lstm): accuracy over seeds, size, epoch time, predict speed.

    python bench/probes/cells.py --data DATA --datasets sst2,mr,chnsenticorp --seeds 13,14,15

Every run uses grutext's default settings except the cell (and any --set KEY=VALUE). Epoch time is the
training loop's time per epoch (validation excluded); predict speed is the loaded model labelling the test
texts in one process (start-up excluded). Prints a markdown table; rows are appended to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import patching  # noqa: F401 - puts bench/ on the path
from results import read_split
from sweep import configs, parse_value

from grutext.predict import Predictor
from grutext.settings import DataSpec
from grutext.training import train


def run(folder: Path, cell: str, seed: int, fixed: dict[str, Any]) -> dict[str, Any]:
    tok, model, cfg = configs({**fixed, "cell": cell, "seed": seed})
    test = read_split(folder, "test") or []
    texts = [r["text"] for r in test]
    with tempfile.TemporaryDirectory() as tmp:
        result = train(DataSpec(str(folder)), tok, model, cfg, Path(tmp) / "m")
        predictor = Predictor.load(result.path)
        predictor.predict(texts[:256])  # warm up
        start = time.perf_counter()
        predictor.predict(texts)
        predict_seconds = time.perf_counter() - start
    history = result.metrics["history"]
    return {
        "dataset": folder.name,
        "cell": cell,
        "seed": seed,
        "accuracy": result.metrics["test"]["accuracy"],
        "parameters": predictor.checkpoint.model.num_parameters(),
        "epoch_seconds": statistics.median(h["seconds"] for h in history),
        "epochs_run": len(history),
        "best_epoch": result.metrics["best_epoch"],
        "predict_lines_per_s": len(texts) / predict_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <name>/{train,validation,test}.jsonl")
    parser.add_argument("--datasets", default="sst2,mr,chnsenticorp")
    parser.add_argument("--cells", default="gru,cho2014,lstm")
    parser.add_argument("--seeds", default="13,14,15")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for every run")
    parser.add_argument("--out", type=Path, default=Path("bench/results/cells.jsonl"))
    args = parser.parse_args()
    fixed = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets.split(","):
        for cell in args.cells.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                row = run(args.data / name, cell, seed, fixed)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    print("| dataset | cell | test accuracy (mean ± sd) | parameters | s / epoch | epochs (best) | predict lines/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in args.datasets.split(","):
        for cell in args.cells.split(","):
            group = [r for r in rows if r["dataset"] == name and r["cell"] == cell]
            acc = [r["accuracy"] for r in group]
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            epochs = "/".join(f"{r['epochs_run']}({r['best_epoch']})" for r in group)
            print(
                f"| {name} | {cell} | {statistics.mean(acc):.4f} ± {sd:.4f} | {group[0]['parameters']:,} "
                f"| {statistics.median(r['epoch_seconds'] for r in group):.1f} | {epochs} "
                f"| {statistics.median(r['predict_lines_per_s'] for r in group):,.0f} |"
            )


if __name__ == "__main__":
    main()
