"""Does a temperature fitted on a small validation split calibrate? With 500 labels grutext carves 50 texts for
validation and fits the temperature (grutext.calibration) on them. This scores each kept round of few_labels.py
--dev runs on its draw's 2,000 development texts (test.jsonl) with the fitted temperature and with none: ECE and
NLL, the metrics the temperature is meant to lower.

    PYTHONPATH=bench/probes/keep_rounds:. GRUTEXT_KEEP_ROUNDS=rounds python bench/few_labels.py --data DATA \
        --datasets sst2 --sizes 500 --arms unlabeled --dev 2000 --label dev --work WORK --out dev.jsonl
    python bench/probes/small_calibration.py rounds/*/round-* --work WORK >> calibration.jsonl
    python bench/probes/small_calibration.py --table calibration.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results import read_split
from rows import build, probe_main, saved_rows

from grutext.calibration import ece, nll, temper
from grutext.engine import load_engine


def score(model: Path, work: Path) -> dict[str, object]:
    draw = work / model.parent.name
    rows = read_split(draw, "test")
    if rows is None:
        raise SystemExit(f"{draw} holds no test.jsonl: give few_labels.py's --work")
    engine = load_engine(model, engine="torch")
    labels = [str(x) for x in engine.labels]
    gold = np.array([labels.index(str(r["label"])) for r in rows])
    fitted = np.asarray(engine.predict_proba([r["text"] for r in rows]), dtype=np.float64)
    t = float(json.loads((model / "config.json").read_text())["calibration"]["temperature"])
    raw = temper(fitted, 1.0 / t, multi_label=False)  # softmax(z / T) raised back to softmax(z)
    return {
        "model": f"{model.parent.name}/{model.name}", "temperature": t,
        "ece at 1": round(ece(raw, gold, False), 4), "ece fitted": round(ece(fitted, gold, False), 4),
        "nll at 1": round(nll(raw, gold, False), 4), "nll fitted": round(nll(fitted, gold, False), 4),
        "build": build(),
    }  # fmt: skip


def table(path: Path) -> str:
    rows = saved_rows(path)
    sets = sorted({str(r["model"]).split("-")[0] for r in rows})
    names = ["temperature", "ece at 1", "ece fitted", "nll at 1", "nll fitted"]
    out = "| | " + " | ".join(names) + " | fitted lowered ECE |\n|---|" + "---:|" * (len(names) + 1) + "\n"
    for s in [*sets, "all"]:
        group = [r for r in rows if s == "all" or str(r["model"]).split("-")[0] == s]
        means = [statistics.mean(float(r[n]) for r in group) for n in names]
        better = sum(float(r["ece fitted"]) < float(r["ece at 1"]) for r in group)
        out += f"| {s} | " + " | ".join(f"{m:.4f}" for m in means) + f" | {better} of {len(group)} |\n"
    return out


def main() -> None:
    probe_main(
        __doc__, "checkpoints inside folders named as the draws", lambda model, args: score(model, args.work), table
    )


if __name__ == "__main__":
    main()
