"""How much of fastText's lead in the results table is protocol: data and choice of settings.

    python bench/probes/fasttext_protocol.py --data DATA --datasets mr,subj,mpqa --seeds 13,14,15

`bench/results.py` trains fastText on all of train and reports the best of four settings on test. grutext
trains on the 90% of train left after it carves its validation split, and never chooses on test. This trains
each of the four fastText settings on grutext's 90% (one carve per seed) and on all of train, scoring test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import patching  # noqa: F401 - puts bench/ on the path
from results import FASTTEXT_CONFIGS, fasttext_tokens

from grutext.data import Split, carve_validation


def accuracy(split: Split, test: list[dict[str, Any]], config: dict[str, Any]) -> float:
    import fasttext

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        pairs = zip(split.texts, split.labels, strict=True)
        lines = (f"__label__{labels[0]} {fasttext_tokens(t)}\n" for t, labels in pairs)
        path.write_text("".join(lines), encoding="utf-8")
        model = fasttext.train_supervised(str(path), verbose=0, thread=1, seed=13, **config)
    guesses = model.predict([fasttext_tokens(r["text"]) for r in test], k=1)[0]
    return sum(g[0][9:] == str(r["label"]) for g, r in zip(guesses, test, strict=True)) / len(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <name>/{train,test}.jsonl")
    parser.add_argument("--datasets", required=True)
    parser.add_argument("--seeds", default="13,14,15")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in args.datasets.split(","):
        read = (args.data / name).joinpath
        rows = [json.loads(line) for line in read("train.jsonl").read_text(encoding="utf-8").splitlines()]
        test = [json.loads(line) for line in read("test.jsonl").read_text(encoding="utf-8").splitlines()]
        full = Split([r["text"] for r in rows], [[str(r["label"])] for r in rows], name)
        for config in FASTTEXT_CONFIGS:
            part = [accuracy(carve_validation(full, 0.1, seed)[0], test, config) for seed in seeds]
            row = {"dataset": name, "config": config, "train_90": part, "train_90_mean": statistics.mean(part)}
            print(json.dumps({**row, "train_100": accuracy(full, test, config)}), flush=True)


if __name__ == "__main__":
    main()
