"""Would retraining on train + validation, for the epochs early stopping chose, beat the early-stopped model?

    python bench/probes/refit_probe.py --data DATA --datasets mr,subj,mpqa --seeds 13,14,15

Nested, so that no test text decides anything: the 10% of train that `grutext train` carves as validation
(V) scores both models; inside the other 90%, a further 10% (W) picks the epoch k. Model A trains on the
remaining 81% and keeps its best epoch on W; model B trains from scratch on all 90% for k epochs (its
learning-rate schedule planned over those k) and keeps the last. One JSON line per run, with both scores on V.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from patching import require

import grutext.training as training
from grutext.data import Split, carve_validation
from grutext.settings import DataSpec, configs_from_options
from grutext.training import train


def dump(folder: Path, **splits: Split) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        pairs = zip(split.texts, split.labels, strict=True)
        rows = (json.dumps({"text": t, "label": labels[0]}) for t, labels in pairs)
        (folder / f"{name}.jsonl").write_text("".join(row + "\n" for row in rows), encoding="utf-8")


def keep_last(original: Any) -> Any:
    """end_epoch that counts every epoch as the best yet, so the last one is kept."""

    def end_epoch(model: Any, task: Any, loop: Any, *args: Any, **kwargs: Any) -> None:
        loop.best_score = [-math.inf]
        original(model, task, loop, *args, **kwargs)

    return end_epoch


def probe(data: Path, name: str, seed: int) -> dict[str, Any]:
    rows = [json.loads(line) for line in (data / name / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    full = Split([r["text"] for r in rows], [[str(r["label"])] for r in rows], name)
    outer_train, v = carve_validation(full, 0.1, seed)
    inner_train, w = carve_validation(outer_train, 0.1, seed)
    _, tok, model, cfg = configs_from_options("", {"seed": seed})
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dump(tmp / "a", train=inner_train, validation=w, test=v)
        a = train(DataSpec(str(tmp / "a")), tok, model, cfg, tmp / "model-a")
        k = a.metrics["best_epoch"]
        dump(tmp / "b", train=outer_train, validation=w, test=v)
        original = training.end_epoch
        training.end_epoch = keep_last(original)  # type: ignore[assignment]
        try:
            b = train(DataSpec(str(tmp / "b")), tok, model, dataclasses.replace(cfg, epochs=k), tmp / "model-b")
        finally:
            training.end_epoch = original  # type: ignore[assignment]
    return {
        "dataset": name,
        "seed": seed,
        "epochs_chosen": k,
        "early_stopped_on_v": a.metrics["test"]["accuracy"],
        "refit_on_v": b.metrics["test"]["accuracy"],
    }


def main() -> None:
    require(training, "end_epoch")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <name>/train.jsonl")
    parser.add_argument("--datasets", required=True)
    parser.add_argument("--seeds", default="13,14,15")
    args = parser.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.datasets.split(","):
            print(json.dumps(probe(args.data, name, seed)), flush=True)


if __name__ == "__main__":
    main()
