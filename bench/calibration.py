"""Calibration and abstaining on real test splits (docs/experiments.md, "Calibration"): grutext trained at
defaults, the test split's expected calibration error (15 bins) before and after the temperature train fits on
validation, the accuracy (which a temperature cannot change), and the accuracy on the texts kept by the
--min-score that keeps a share of them (80% by default).

    python bench/calibration.py --data DATA --datasets sst2,mr --seeds 0,1,2 --out calibration.jsonl
    python bench/calibration.py --out calibration.jsonl --table

Each model is the command a user would run (`grutext train DATA/NAME --seed S`); "before" is the same model's
probabilities at temperature 1, read back from the calibrated ones (grutext.calibration.temper with 1 / T).
Rows go to --out as JSON lines; a (dataset, seed) already there is skipped, so a stopped run goes on.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import read_split
from rows import grouped, save_row, saved_rows

from grutext.calibration import ece, nll, reliability, temper
from grutext.engine import load_engine


def measure(data: Path, name: str, seed: int, work: Path, keep: float) -> dict[str, Any]:
    out = work / f"{name}-{seed}"
    if not (out / "config.json").is_file():
        cmd = [sys.executable, "-m", "grutext", "train", str(data / name), "--output", str(out), "--seed", str(seed)]
        subprocess.run([*cmd, "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    model = load_engine(out, "torch")
    rows = read_split(data / name, "test")
    assert rows is not None
    probs = np.asarray(model.predict_proba([r["text"] for r in rows]), dtype=np.float64)
    index = {label: i for i, label in enumerate(model.labels)}
    target = np.array([index[str(r["label"])] for r in rows])
    t = json.loads((out / "config.json").read_text())["calibration"]["temperature"]
    raw = temper(probs, 1.0 / t, False)
    right = probs.argmax(axis=1) == target
    top = probs.max(axis=1)
    threshold = float(np.quantile(top, 1 - keep))  # the --min-score that keeps `keep` of the texts
    kept = top >= threshold
    return {
        "dataset": name,
        "seed": seed,
        "temperature": t,
        "accuracy": float(right.mean()),
        "ece_before": ece(raw, target, False),
        "ece_after": ece(probs, target, False),
        "nll_before": nll(raw, target, False),
        "nll_after": nll(probs, target, False),
        "ece_floor": ece_floor(probs),
        "keep": keep,
        "min_score": threshold,
        "coverage": float(kept.mean()),
        "accuracy_kept": float(right[kept].mean()),
    }


def ece_floor(probs: np.ndarray, draws: int = 200) -> float:
    """The ECE a perfectly calibrated model with these confidences would show on a test split this size: each
    text right with exactly its top probability, drawn `draws` times. ECE over a few thousand texts is noisy;
    below this floor no model can be expected to go."""
    rng = np.random.default_rng(0)
    top = probs.max(axis=1)
    return float(np.mean([reliability(top, (rng.random(len(top)) < top).astype(np.float64))[0] for _ in range(draws)]))


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| set | seeds | temperature | accuracy | test ECE before | test ECE after | NLL before | NLL after "
        "| ECE of a perfectly calibrated model | --min-score for 80% | accuracy on those |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, got in grouped(rows, lambda r: r["dataset"]).items():

        def mean(key: str, got: list[dict[str, Any]] = got) -> float:
            return statistics.mean(r[key] for r in got)

        lines.append(
            f"| {name} | {len(got)} | {mean('temperature'):.2f} | {mean('accuracy'):.4f} | {mean('ece_before'):.4f} "
            f"| {mean('ece_after'):.4f} | {mean('nll_before'):.4f} | {mean('nll_after'):.4f} "
            f"| {mean('ece_floor'):.4f} | {mean('min_score'):.3f} | {mean('accuracy_kept'):.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder of <name>/{train,test}.jsonl")
    parser.add_argument("--datasets", default="sst2,mr")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--keep", type=float, default=0.8, help="the share of test texts --min-score keeps")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "grutext-calibration")
    parser.add_argument("--out", type=Path, default=Path("calibration.jsonl"))
    parser.add_argument("--table", action="store_true", help="print the table of the rows in --out and stop")
    args = parser.parse_args()
    rows = saved_rows(args.out)
    if not args.table:
        if args.data is None:
            parser.error("--data is needed to run (or --table to print saved rows)")
        done = {(r["dataset"], r["seed"]) for r in rows}
        for name in args.datasets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                if (name, seed) in done:
                    continue
                row = measure(args.data, name, seed, args.work, args.keep)
                save_row(args.out, row, rows)
    print(table(rows))


if __name__ == "__main__":
    main()
