"""Which self-training round to keep: rules scored on the rounds that bench/few_labels.py rows record.

Every `--unlabeled` row of few_labels.py holds each round's validation score (the one the command chooses by) and
its score on the draw's test.jsonl: the test split, or with few_labels.py --dev a development split of other train
texts, which is the one to choose a rule on. Rules that choose a round from the validation scores alone are compared
here by the mean of that score for the round each one keeps, per set and over all rows:

    python bench/probes/round_choice.py few_labels.jsonl [more.jsonl ...] [--label rounds3] [--rounds 2]

A rule may only read the validation scores (and the round numbers); the other score is what it is judged by.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rows import Row, saved_rows

from grutext.semisupervised import kept_round

Rounds = list[dict[str, float]]


def best_latest(rounds: Rounds) -> int:
    """The command's earlier rule: the best validation score, the later round on a tie."""
    return max(range(len(rounds)), key=lambda i: (rounds[i]["validation"], i))


def best_earliest(rounds: Rounds) -> int:
    return max(range(len(rounds)), key=lambda i: (rounds[i]["validation"], -i))


def last(rounds: Rounds) -> int:
    return len(rounds) - 1


def fixed(k: int) -> Callable[[Rounds], int]:
    return lambda rounds: min(k, len(rounds) - 1)


def the_command(rounds: Rounds) -> int:
    """grutext's rule (semisupervised.kept_round): the last round unless an earlier one is clearly better."""
    return int(kept_round(rounds)["round"])


RULES: dict[str, Callable[[Rounds], int]] = {
    "the command: the last round unless an earlier one leads by 2 standard errors": the_command,
    "best validation, later on ties (the earlier rule)": best_latest,
    "best validation, earlier on ties": best_earliest,
    "the last round": last,
    **{f"round {k}": fixed(k) for k in range(4)},
    "oracle (best by the other score; not a rule)": lambda rounds: max(
        range(len(rounds)), key=lambda i: rounds[i]["test"]
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--label", help="only rows with this --label (or these, comma-separated)")
    parser.add_argument("--rounds", type=int, help="as if the runs had stopped after this round (--self-training)")
    args = parser.parse_args()
    rows: list[Row] = [
        r
        for f in args.files
        for r in saved_rows(f)
        if r.get("rounds") and (args.label is None or r.get("label", "") in args.label.split(","))
    ]
    for r in rows:
        if args.rounds is not None:
            r["rounds"]["rounds"] = r["rounds"]["rounds"][: args.rounds + 1]
        for one in r["rounds"]["rounds"]:  # rows from before rounds recorded it: the 10% carve of the labels
            one.setdefault("validation_n", round(r["size"] / 10))
    sets = sorted({f"{r['dataset']} {r['size']}" for r in rows})
    print("| rule | " + " | ".join(sets) + " | mean of sets |\n|---|" + "---:|" * (len(sets) + 1))
    for name, rule in RULES.items():
        means = []
        for s in sets:
            chosen = [
                r["rounds"]["rounds"][rule(r["rounds"]["rounds"])]["test"]
                for r in rows
                if f"{r['dataset']} {r['size']}" == s
            ]
            means.append(statistics.mean(chosen))
        cells = " | ".join(f"{m:.4f}" for m in means)
        print(f"| {name} | {cells} | {statistics.mean(means):.4f} |")
    counts = {s: sum(f"{r['dataset']} {r['size']}" == s for r in rows) for s in sets}
    print("\nrows (draws) per set: " + ", ".join(f"{s}: {n}" for s, n in counts.items()))


if __name__ == "__main__":
    main()
