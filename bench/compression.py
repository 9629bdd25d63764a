"""What `grutext compress` costs: size and accuracy of compressed checkpoints against their originals, over
data sets, seeds and settings, validation to choose the settings and test to report them.

    python bench/compression.py --data ../shared/data --models bench/results/compress \\
        --sets sst2 mr bbc chnsenticorp --seeds 0 1 2 --settings 2:1 4:1 2:0.5 4:0.5 \\
        --out bench/results/compression.jsonl

A checkpoint missing under --models (<set>-<seed>) is trained first at defaults (`grutext train DATA
--seed S`). Each setting DSUB:KEEP[:DENSE] is `grutext compress --dsub DSUB --keep-rows KEEP [--dense
DENSE]`. Scores come from the ONNX engine; validation is the split the run itself used (its file, or the
same carve of train). Sizes are every file of the checkpoint; `before_store_once` adds model.safetensors a
second time, as model.onnx held the weights a second time before they were stored once. Prints a markdown
table of means over seeds.
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

from grutext.artifacts import checkpoint_bytes, read_meta
from grutext.data import load_labelled, training_splits
from grutext.evaluate import evaluate
from grutext.onnx_engine import OnnxPredictor


def train(data: Path, out: Path, seed: int) -> None:
    command = [sys.executable, "-m", "grutext", "train", str(data), "--output", str(out), "--seed", str(seed)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def scores(model: Path, splits: dict[str, Any]) -> dict[str, float]:
    engine = OnnxPredictor.load(model)
    try:
        return {name: float(evaluate(engine, split)["accuracy"]) for name, split in splits.items()}
    finally:
        engine.close()


def splits_of(model: Path, data: Path) -> dict[str, Any]:
    train_cfg = read_meta(model).config["train"]
    labelled = training_splits(load_labelled(str(data)), train_cfg["val_fraction"], train_cfg["seed"])
    test = load_labelled(str(data / "test.jsonl")).splits
    return {"validation": labelled.splits["validation"], "test": next(iter(test.values()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <set>/{train,test}.jsonl")
    parser.add_argument("--models", type=Path, required=True, help="folder of <set>-<seed> checkpoints")
    parser.add_argument("--sets", nargs="+", default=["sst2", "mr", "bbc", "chnsenticorp"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["2:1", "4:1", "2:0.5", "4:0.5"])
    parser.add_argument("--out", type=Path, required=True, help="jsonl file, one row per model and setting")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as out:
        for name in args.sets:
            for seed in args.seeds:
                model = args.models / f"{name}-{seed}"
                if not (model / "config.json").is_file():
                    train(args.data / name, model, seed)
                splits = splits_of(model, args.data / name)
                files = checkpoint_bytes(model)
                base = {"set": name, "seed": seed, "bytes": sum(files.values())}
                base["before_store_once"] = base["bytes"] + files["model.safetensors"]
                found = [{**base, "setting": "none", **scores(model, splits)}]
                for setting in args.settings:
                    dsub, keep, *dense = setting.split(":")
                    with tempfile.TemporaryDirectory() as tmp:
                        small = Path(tmp) / "small"
                        command = [sys.executable, "-m", "grutext", "compress", "-m", str(model), "-o", str(small)]
                        command += ["--dsub", dsub, "--keep-rows", keep, *(["--dense", dense[0]] if dense else [])]
                        subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
                        size = sum(checkpoint_bytes(small).values())
                        found.append({**base, "setting": setting, **scores(small, splits), "bytes": size})
                for row in found:
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(json.dumps(row), file=sys.stderr)
                rows.extend(found)
    print(table(rows))


def table(rows: list[dict[str, Any]]) -> str:
    """Per set and setting, means over seeds: size, x smaller than before weights were stored once, and the
    change in validation and test accuracy (points) against the uncompressed checkpoint."""
    lines = [
        "| set | setting (dsub:keep) | MB | x smaller (vs weights twice) | validation | Δ validation | test | Δ test |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    sets = dict.fromkeys(r["set"] for r in rows)
    for name in sets:
        mine = [r for r in rows if r["set"] == name]
        plain = {r["seed"]: r for r in mine if r["setting"] == "none"}
        for setting in dict.fromkeys(r["setting"] for r in mine):
            group = [r for r in mine if r["setting"] == setting]

            def mean(key: str, group: list[dict[str, Any]] = group) -> float:
                return statistics.mean(r[key] for r in group)

            def delta(key: str, group: list[dict[str, Any]] = group, plain: dict[int, Any] = plain) -> float:
                return 100 * statistics.mean(r[key] - plain[r["seed"]][key] for r in group)

            ratio = statistics.mean(r["before_store_once"] / r["bytes"] for r in group)
            lines.append(
                f"| {name} | {setting} | {mean('bytes') / 1e6:.2f} | {ratio:.1f} | {mean('validation'):.4f} | "
                f"{delta('validation'):+.2f} | {mean('test'):.4f} | {delta('test'):+.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
