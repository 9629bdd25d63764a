"""Does `grutext tune` beat the defaults on test (docs/experiments.md, "tune")? For each set and seed: `grutext
tune DATA/NAME --timeout MINUTES --seed S` and `grutext train DATA/NAME --seed S`, both as a user would run them,
each model's test accuracy, and what the search did (trials finished, pruned, out of time; the kept trial).

    python bench/tune_check.py --data DATA --datasets mpqa,mr,subj --seeds 13,14,15 --timeout 10 --out tune.jsonl
    python bench/tune_check.py --out tune.jsonl --table

Rows go to --out as JSON lines; a (dataset, seed, timeout) already there is skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rows import grouped, save_row, saved_rows


def grutext(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grutext", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(data: Path, name: str, seed: int, minutes: float, work: Path) -> dict[str, Any]:
    tuned, default = work / f"{name}-{seed}-tuned", work / f"{name}-{seed}-defaults"
    seconds = grutext("tune", str(data / name), "-o", str(tuned), "--timeout", str(minutes), "--seed", str(seed),
                      "--overwrite")  # fmt: skip
    if not (default / "metrics.json").is_file():
        grutext("train", str(data / name), "-o", str(default), "--seed", str(seed), "--overwrite")
    tuning = json.loads((tuned / "tuning.json").read_text())
    states = [t["state"] for t in tuning["trials"]]
    kept = next(t for t in tuning["trials"] if t.get("score") == tuning["best"]["score"])
    return {
        "dataset": name,
        "seed": seed,
        "timeout": minutes,
        "search_seconds": round(seconds, 1),
        "tuned": json.loads((tuned / "metrics.json").read_text())["test"]["accuracy"],
        "defaults": json.loads((default / "metrics.json").read_text())["test"]["accuracy"],
        "trials": len(states),
        "complete": states.count("complete"),
        "pruned": states.count("pruned"),
        "out_of_time": states.count("out of time"),
        "kept_defaults": bool(kept.get("defaults")),
        "best_validation": tuning["best"]["score"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| set | timeout | seeds | defaults (test) | tune (test) | trials (complete, pruned) | kept the defaults "
        "| search time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, got in grouped(rows, lambda r: (r["dataset"], r["timeout"])).items():

        def mean(field: str, got: list[dict[str, Any]] = got) -> float:
            return statistics.mean(float(r[field]) for r in got)

        lines.append(
            f"| {key[0]} | {key[1]:g} min | {len(got)} | {mean('defaults'):.4f} | {mean('tuned'):.4f} "
            f"| {mean('trials'):.1f} ({mean('complete'):.1f}, {mean('pruned'):.1f}) "
            f"| {sum(r['kept_defaults'] for r in got)} of {len(got)} | {mean('search_seconds') / 60:.1f} min |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--datasets", default="mpqa,mr,subj")
    parser.add_argument("--seeds", default="13,14,15")
    parser.add_argument("--timeout", type=float, default=10.0, help="tune's --timeout, minutes")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "grutext-tune-check")
    parser.add_argument("--out", type=Path, default=Path("tune_check.jsonl"))
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    rows = saved_rows(args.out)
    if not args.table:
        if args.data is None:
            parser.error("--data is needed to run (or --table)")
        done = {(r["dataset"], r["seed"], r["timeout"]) for r in rows}
        for name in args.datasets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                if (name, seed, args.timeout) in done:
                    continue
                row = measure(args.data, name, seed, args.timeout, args.work)
                save_row(args.out, row, rows)
    print(table(rows))


if __name__ == "__main__":
    main()
