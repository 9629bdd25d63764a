"""Class weights on imbalanced data (docs/experiments.md, "Class weights"): `grutext train` at defaults with
--class-weight none and balanced, seed by seed, scored on the test split: macro-F1 and each class's precision
and recall, and which epoch early stopping kept.

    python bench/class_weight.py --data DATA --datasets sms_spam --seeds 0,1,2 --out class_weight.jsonl
    python bench/class_weight.py --out class_weight.jsonl --table
    python bench/class_weight.py --data DATA --arms balanced --set label-smoothing=0 --label no-smoothing

Rows go to --out as JSON lines; a (dataset, arm, label, seed) already there is skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rows import grouped, save_row, saved_rows


def run(data: Path, name: str, arm: str, seed: int, extra: list[str], work: Path) -> dict[str, Any]:
    out = work / f"{name}-{arm}-{seed}"
    cmd = [sys.executable, "-m", "grutext", "train", str(data / name), "-o", str(out), "--seed", str(seed)]
    cmd += ["--class-weight", arm, "--overwrite", *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    test, val = metrics["test"], metrics["validation"]
    per_class = {label: {k: row[k] for k in ("precision", "recall", "f1")} for label, row in test["per_class"].items()}
    history = [round(h.get("val_macro_f1", h.get("val_accuracy", 0.0)), 4) for h in metrics["history"]]
    return {
        "macro_f1": test["macro_f1"],
        "accuracy": test["accuracy"],
        "val_macro_f1": val["macro_f1"],
        "per_class": per_class,
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "val_history": history,
    }


def _mean(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{spread}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| set | run | seeds | validation macro-F1 | test macro-F1 | minority precision | minority recall |"]
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for key, got in grouped(rows, lambda r: (r["dataset"], r["arm"], r["label"])).items():
        minority = [r["per_class"][r["minority"]] for r in got]
        name = key[1] + (f" ({key[2]})" if key[2] else "")
        lines.append(
            f"| {key[0]} | {name} | {len(got)} | {_mean([r['val_macro_f1'] for r in got])} "
            f"| {_mean([r['macro_f1'] for r in got])} | {_mean([m['precision'] for m in minority])} "
            f"| {_mean([m['recall'] for m in minority])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--datasets", default="sms_spam")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default="none,balanced")
    parser.add_argument("--set", action="append", default=[], help="a train flag for every run: KEY=VALUE")
    parser.add_argument("--label", default="", help="names this run's --set in the rows")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "grutext-class-weight")
    parser.add_argument("--out", type=Path, default=Path("class_weight.jsonl"))
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    rows = saved_rows(args.out)
    if not args.table:
        if args.data is None:
            parser.error("--data is needed to run (or --table)")
        extra = [part for kv in args.set for part in (f"--{kv.split('=', 1)[0]}", kv.split("=", 1)[1])]
        done = {(r["dataset"], r["arm"], r["label"], r["seed"]) for r in rows}
        for name in args.datasets.split(","):
            counts: dict[str, int] = {}
            for line in (args.data / name / "train.jsonl").read_text(encoding="utf-8").splitlines():
                label = str(json.loads(line)["label"])
                counts[label] = counts.get(label, 0) + 1
            minority = min(counts, key=lambda k: counts[k])
            for arm in args.arms.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    if (name, arm, args.label, seed) in done:
                        continue
                    got = run(args.data, name, arm, seed, extra, args.work / (args.label or "plain"))
                    row = {"dataset": name, "arm": arm, "label": args.label, "seed": seed, "minority": minority, **got}
                save_row(args.out, row, rows)
    print(table(rows))


if __name__ == "__main__":
    main()
