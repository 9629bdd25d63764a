"""Every filter cleanlab offers, on the out-of-sample probabilities of one planted-noise audit: which rows each
would flag, and their precision and recall against the flipped labels (docs/experiments.md, "Finding
mislabelled rows").

    python bench/probes/audit_filters.py --data DATA --seed 0
    python bench/probes/audit_filters.py --data DATA --seed 0 --vectors DATA/vectors/glove.6B.50d.100k.txt.gz

The noisy sample is bench/audit_noise.py's (the same draw and flips for the same seed); the probabilities come
from grutext.audit at defaults (or with --vectors), 5 folds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from audit_noise import flip, load, write

import grutext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--vectors", type=Path)
    args = parser.parse_args()
    import cleanlab.filter
    import cleanlab.rank

    train, test = load(args.data, args.dataset, args.rows, args.seed)
    noisy, flipped = flip(train, 0.1, args.seed)
    folder = write(Path(tempfile.mkdtemp(prefix="audit-filters-")), noisy, test)
    options = {"vectors": str(args.vectors)} if args.vectors else {}
    result = grutext.audit(folder / "train.jsonl", folds=5, seed=args.seed, **options)
    index = {name: i for i, name in enumerate(result.labels)}
    given = np.array([index[r["label"]] for r in noisy])
    truth = np.array([index[r["label"]] for r in train])
    probs = result.probs
    planted = {i - 1 for i in flipped}

    def scored(mask: np.ndarray) -> dict[str, float]:
        chosen = set(np.flatnonzero(mask).tolist())
        hits = len(chosen & planted)
        return {"flagged": len(chosen), "precision": hits / max(len(chosen), 1), "recall": hits / len(planted)}

    out: dict[str, object] = {"out_of_sample_accuracy": float((probs.argmax(axis=1) == truth).mean())}
    for how in ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"):
        out[how] = scored(cleanlab.filter.find_label_issues(given, probs, filter_by=how))
    order = np.argsort(cleanlab.rank.get_label_quality_scores(given, probs, method="self_confidence"))
    for k in (500, 800, 1000, 1200):
        mask = np.zeros(len(given), dtype=bool)
        mask[order[:k]] = True
        out[f"top {k}"] = scored(mask)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
