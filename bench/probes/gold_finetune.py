"""Does a last pass over the gold labels alone help a self-trained classifier? The kept round (round-2) of an
--unlabeled run trained on 450 labelled texts among thousands of pseudo-labelled ones; this continues it
(`grutext train --init-from`, a classifier checkpoint) on the draw's labelled texts only, then scores the round
and its continuation on the draw's test.jsonl: the development texts of a few_labels.py --dev draw.

    PYTHONPATH=bench/probes/keep_rounds:. GRUTEXT_KEEP_ROUNDS=rounds python bench/few_labels.py --data DATA \
        --datasets sst2 --sizes 500 --arms unlabeled --dev 2000 --label dev --work WORK --out dev.jsonl
    python bench/probes/gold_finetune.py rounds/* --work WORK --lr 0.004 --epochs 20 >> gold.jsonl
    python bench/probes/gold_finetune.py --table gold.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rows import build, probe_main, saved_rows, set_means, set_of


def accuracy(model: Path, data: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "grutext", "evaluate", "-m", str(model), str(data), "--json"],
        capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    return round(float(json.loads(out.stdout)["accuracy"]), 4)


def score(run: Path, work: Path, lr: float, epochs: int) -> dict[str, object]:
    draw = work / run.name
    if not (draw / "test.jsonl").is_file():
        raise SystemExit(f"{draw} holds no test.jsonl: give few_labels.py's --work")
    kept = max(run.glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "grutext", "train", str(draw / "train.jsonl"), "--init-from", str(kept),
             "-o", f"{tmp}/m", "--lr", str(lr), "--epochs", str(epochs), "--seed", "13"],
            capture_output=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip
        continued = accuracy(Path(tmp) / "m", draw / "test.jsonl")
    return {
        "run": run.name, "lr": lr, "epochs": epochs, "kept round": accuracy(kept, draw / "test.jsonl"),
        "then gold only": continued, "build": build(),
    }  # fmt: skip


def table(path: Path) -> str:
    rows = saved_rows(path)
    names = ("kept round", "then gold only")
    return set_means("", [(name, [(set_of(r), float(r[name])) for r in rows]) for name in names])


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lr", type=float, default=0.004, help="the continuation's peak learning rate")
    parser.add_argument("--epochs", type=int, default=20, help="the continuation's most epochs")


def main() -> None:
    probe_main(
        __doc__,
        "folders of kept rounds (round-0, round-1, ...)",
        lambda run, args: score(run, args.work, args.lr, args.epochs),
        table,
        options,
    )


if __name__ == "__main__":
    main()
