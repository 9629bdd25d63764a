"""Measure the effect of one or more settings on test accuracy: how grutext's defaults were picked.

    python bench/sweep.py --data DATA --datasets mr,bbc --grid tokenizer=word,wordpiece,unigram
    python bench/sweep.py --datasets mr --grid pooling=last,mean,max --grid dropout=0.3,0.5 --seeds 13,14

Each run trains with the library defaults except the swept settings (and any --set KEY=VALUE), on the
dataset's own splits, and appends one JSON line to --out; a markdown table of the means is printed at the end.
Validation picks the epoch; the test split is only reported.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from grutext.config import ModelConfig, TokenizerConfig, TrainConfig
from grutext.errors import GrutextError
from grutext.settings import DataSpec, configs_from_options
from grutext.training import train


def parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def configs(settings: dict[str, Any]) -> tuple[TokenizerConfig, ModelConfig, TrainConfig]:
    """Settings named like grutext train's flags, through the library's own mapping."""
    try:
        _, tok, model, trn = configs_from_options("", settings)
    except GrutextError as exc:
        raise SystemExit(str(exc)) from None
    return tok, model, trn


def run_one(data_dir: Path, dataset: str, settings: dict[str, Any]) -> dict[str, Any]:
    tok, model, trn = configs(settings)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(DataSpec(str(data_dir / dataset)), tok, model, trn, Path(tmp) / "model")
        wall = time.perf_counter() - start
        vectors = json.loads((result.path / "config.json").read_text()).get("vectors")
    m = result.metrics
    main = "accuracy" if "accuracy" in m["test"] else "micro_f1"  # multi-label: micro-F1 in the accuracy columns
    return {
        "dataset": dataset,
        "settings": settings,
        "test_accuracy": m["test"][main],
        "test_macro_f1": m["test"]["macro_f1"],
        "test_recall": {label: row["recall"] for label, row in m["test"]["per_class"].items()},
        "val_accuracy": m["validation"][main],
        "best_epoch": m["best_epoch"],
        "epochs_run": m["epochs_run"],
        "train_seconds": m["train_seconds"],
        "wall_seconds": round(wall, 1),
        **({"vectors": vectors} if vectors else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <name>/{train,validation,test}.jsonl")
    parser.add_argument("--datasets", required=True, help="comma-separated folder names under --data")
    parser.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,... (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE fixed for every run")
    parser.add_argument("--seeds", default="13", help="comma-separated seeds")
    parser.add_argument("--out", type=Path, default=Path("bench/results/sweep.jsonl"))
    args = parser.parse_args()

    fixed = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    axes = [(k, [parse_value(v) for v in vs.split(",")]) for k, vs in (g.split("=", 1) for g in args.grid)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for dataset in args.datasets.split(","):
        for combo in itertools.product(*(values for _, values in axes)):
            for seed in (int(s) for s in args.seeds.split(",")):
                settings = {**fixed, **dict(zip((k for k, _ in axes), combo, strict=True)), "seed": seed}
                row = run_one(args.data, dataset, settings)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")

    print("| dataset | " + " | ".join(k for k, _ in axes) + " | test acc (mean) | test macro-F1 | train s |")
    print("|---" * (len(axes) + 4) + "|")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["dataset"], *(row["settings"].get(k) for k, _ in axes))
        groups.setdefault(key, []).append(row)
    for key, group in groups.items():
        acc = [r["test_accuracy"] for r in group]
        sd = f" ± {statistics.stdev(acc):.4f}" if len(acc) > 1 else ""
        f1 = statistics.mean(r["test_macro_f1"] for r in group)
        secs = statistics.mean(r["train_seconds"] for r in group)
        print(f"| {' | '.join(str(k) for k in key)} | {statistics.mean(acc):.4f}{sd} | {f1:.4f} | {secs:.0f} |")


if __name__ == "__main__":
    main()
