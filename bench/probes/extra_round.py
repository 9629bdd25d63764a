"""Would a self-training round that adds a larger share of the unlabelled texts do better? The probe trains one
more round from the draw's language model (as every round does) on the labelled texts plus the share of the pool
an earlier round is surest of: `--share` of it, labelled by round `--after` (the last kept by default, so a round
3), while the default rounds add 0.2 each. Scored on the draw's test.jsonl: the development texts of a
few_labels.py --dev draw, whose kept rounds bench/probes/keep_rounds saved.

    PYTHONPATH=bench/probes/keep_rounds:. GRUTEXT_KEEP_ROUNDS=rounds python bench/few_labels.py --data DATA \
        --datasets sst2 --sizes 500 --arms unlabeled --dev 2000 --label dev --work WORK --out dev.jsonl
    python bench/probes/extra_round.py rounds/* --work WORK --share 0.4 >> extra.jsonl
    python bench/probes/extra_round.py rounds/* --work WORK --share 0.4 --after 1 >> extra.jsonl  # a round 2
    python bench/probes/extra_round.py rounds/* --work WORK --share 0.4 --after 1 --gold-share 0.25 >> extra.jsonl
    python bench/probes/extra_round.py --table extra.jsonl

`--gold-share R` repeats the labelled training rows (whole copies, at least one) until they make R of the round's
training rows: with 450 labels, 0.4 of sst2's pool is 26,590 pseudo-labelled phrases, and a gold row is 2% of them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rows import build, probe_main, saved_rows, set_means, set_of

from grutext.config import TrainConfig
from grutext.corpus import read_texts
from grutext.data import load_labelled, training_splits
from grutext.semisupervised import _training_texts, pseudo_labels
from grutext.settings import DataSpec, configs_from_options
from grutext.training import train_from
from grutext.warmstart import open_start


def _test(folder: Path) -> float:
    """A kept round's accuracy on the draw's test.jsonl (its development texts)."""
    return round(float(json.loads((folder / "metrics.json").read_text())["test"]["accuracy"]), 4)


def gold_copies(spec: DataSpec, cfg: TrainConfig, pseudo: int, gold_share: float) -> list[tuple[str, list[str]]]:
    """The labelled training rows, repeated (beyond the one copy the run has) to make `gold_share` of the rows."""
    train = training_splits(load_labelled(spec.source, **spec.read_options()), cfg.val_fraction, cfg.seed)
    rows = list(zip(train.splits["train"].texts, train.splits["train"].labels, strict=True))
    copies = max(1, math.ceil(gold_share * pseudo / ((1 - gold_share) * len(rows))))
    return rows * (copies - 1)


def score(run: Path, work: Path, share: float, after: int | None, gold_share: float = 0.0) -> dict[str, object]:
    draw = work / run.name
    lm = work / f"{run.name.split('-')[0]}-lm"
    if not (draw / "test.jsonl").is_file() or not (lm / "config.json").is_file():
        raise SystemExit(f"{draw} or {lm} is missing: give few_labels.py's --work")
    rounds = sorted(run.glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    last = rounds[-1] if after is None else run / f"round-{after}"
    unlabelled = str(draw / "unlabelled.txt")
    spec, tok_cfg, model_cfg, cfg = configs_from_options(str(draw), {"unlabeled": [unlabelled]})
    labelled = set(_training_texts(spec, cfg))
    pool = [t for t in read_texts([unlabelled], None)[0] if t not in labelled]
    extra = pseudo_labels(last, pool, share)
    repeated = gold_copies(spec, cfg, len(extra), gold_share) if gold_share else []
    extra = [*extra, *repeated]
    with tempfile.TemporaryDirectory() as tmp:
        result = train_from(spec, tok_cfg, model_cfg, cfg, Path(tmp) / "m", open_start(str(lm)), extra=extra)
    gold = {"gold_share": gold_share, "gold_repeated": len(repeated)} if gold_share else {}
    return {
        "run": run.name, "share": share, "after": int(last.name.split("-")[1]),
        "pseudo_labelled": len(extra) - len(repeated), **gold,
        last.name: _test(last), rounds[-1].name: _test(rounds[-1]),  # the default's kept round, the baseline
        "next round": round(float(result.metrics["test"]["accuracy"]), 4), "build": build(),
    }  # fmt: skip


def table(path: Path) -> str:
    """Round 2 (the default's kept round) and each (round labelled from, share) probed, mean per set."""
    rows = saved_rows(path)
    baseline = {str(r["run"]): (set_of(r), float(r["round-2"])) for r in rows if "round-2" in r}
    lines = [("round 2 at 0.2, from round 1 (the default until 0.2,0.4)", list(baseline.values()))]

    def probed(r: dict[str, object]) -> tuple[int, float, float]:  # (round labelled from, share, gold share)
        return int(str(r.get("after", 2))), float(str(r["share"])), float(str(r.get("gold_share", 0)))

    for key in sorted({probed(r) for r in rows}):
        after, share, gold = key
        group = [r for r in rows if probed(r) == key]
        name = f"round {after + 1} at {share}, from round {after}" + (f", gold {gold} of the rows" if gold else "")
        lines.append((name, [(set_of(r), float(r["next round"])) for r in group]))
    return set_means("round", lines)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--share", type=float, default=0.2, help="the share of the pool the new round adds")
    parser.add_argument("--after", type=int, help="label the pool with this round (default: the last kept)")
    parser.add_argument("--gold-share", type=float, default=0.0, help="repeat the labelled rows to make this share")


def main() -> None:
    probe_main(
        __doc__,
        "folders of kept rounds (round-0, round-1, ...)",
        lambda run, args: score(run, args.work, args.share, args.after, args.gold_share),
        table,
        options,
    )


if __name__ == "__main__":
    main()
