"""Planted label noise (docs/experiments.md, "Finding mislabelled rows"): flip a share of the training labels at
random (seeded), run `grutext audit` on the noisy rows, and measure

  * the flagged rows' precision and recall against the flips,
  * the test accuracy of a model trained (at defaults) on the clean rows, on the noisy rows, and on the noisy
    rows minus the flagged ones, and how much of the accuracy the noise cost the cleaning wins back.

    python bench/audit_noise.py --data DATA --datasets sst2,trec-like --seeds 0 --out audit.jsonl
    python bench/audit_noise.py --out audit.jsonl --table

sst2 is a sample of --rows training rows (10,000) from DATA/sst2 and its test split. trec-like is made here: six
kinds of question (abbreviation, description, entity, human, location, number), as in TREC's coarse classes,
written from templates and word lists (15% from vague templates that do not say which class), 2,000 for
training and 1,000 for test. A flipped label is drawn
uniformly from the other classes. Rows go to --out as JSON lines; a (dataset, seed) already there is skipped.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import read_split
from rows import grouped, save_row, saved_rows

SUBJECTS = ["the eiffel tower", "mount everest", "the amazon river", "the great wall", "the moon landing",
            "the printing press", "the telephone", "penicillin", "the roman empire", "jazz", "the internet",
            "the olympic games", "the nile", "chess", "the violin", "the titanic", "photosynthesis", "gravity",
            "the beatles", "the mona lisa", "the panama canal", "baseball", "the sahara", "democracy"]  # fmt: skip
ACRONYMS = ["nasa", "nato", "unesco", "fbi", "dna", "laser", "radar", "scuba", "opec", "ibm", "bbc", "cpu",
            "html", "aids", "unicef", "fifa", "gdp", "mri", "atm", "pin"]  # fmt: skip
TEMPLATES: dict[str, list[str]] = {
    "ABBR": ["what does {a} stand for ?", "what is the full form of {a} ?", "{a} is an abbreviation for what ?",
             "what do the letters {a} mean ?", "what is {a} short for ?"],
    "DESC": ["why did {s} become famous ?", "how does {s} work ?", "what is the meaning of {s} ?",
             "how would you describe {s} ?", "what causes {s} to matter ?", "why is {s} important ?"],
    "ENTY": ["what kind of animal lives near {s} ?", "what color is {s} ?", "what instrument is linked to {s} ?",
             "what food is named after {s} ?", "what sport is played near {s} ?", "what disease was cured by {s} ?"],
    "HUM": ["who invented {s} ?", "who discovered {s} ?", "who built {s} ?", "which person first described {s} ?",
            "who was the leader behind {s} ?", "what group created {s} ?"],
    "LOC": ["where is {s} ?", "in which country is {s} ?", "what city is closest to {s} ?",
            "where can you find {s} ?", "on which continent is {s} ?", "what state holds {s} ?"],
    "NUM": ["how many people visit {s} each year ?", "when was {s} built ?", "how old is {s} ?",
            "how long is {s} ?", "in what year did {s} begin ?", "how much does {s} cost ?"],
}  # fmt: skip


# Questions that say little of what answer they want, as many of TREC's do: their class is a guess the text
# cannot settle, so even clean data has a ceiling below 1.
VAGUE = ["what about {s} ?", "tell me about {s} .", "what is known of {s} ?", "{s} ?", "what of {s} ?"]
VAGUE_SHARE = 0.15


def trec_like(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(TEMPLATES))
        template = rng.choice(VAGUE if rng.random() < VAGUE_SHARE else TEMPLATES[label])
        rows.append({"text": template.format(a=rng.choice(ACRONYMS), s=rng.choice(SUBJECTS)), "label": label})
    return rows


def load(data: Path | None, name: str, rows: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if name == "trec-like":
        return trec_like(2000, 1000 + seed), trec_like(1000, 2000 + seed)
    assert data is not None
    train, test = read_split(data / name, "train"), read_split(data / name, "test")
    assert train is not None and test is not None
    sample = random.Random(seed).sample(train, min(rows, len(train)))
    return [{"text": r["text"], "label": str(r["label"])} for r in sample], test


def flip(rows: list[dict[str, Any]], share: float, seed: int) -> tuple[list[dict[str, Any]], set[int]]:
    rng = random.Random(10_000 + seed)
    labels = sorted({r["label"] for r in rows})
    flipped = set(rng.sample(range(len(rows)), int(share * len(rows))))
    noisy = [dict(r) for r in rows]
    for i in flipped:
        noisy[i]["label"] = rng.choice([x for x in labels if x != rows[i]["label"]])
    return noisy, {i + 1 for i in flipped}  # audit counts rows from 1


def write(folder: Path, train: list[dict[str, Any]], test: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows)
    return folder


def grutext(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "grutext", *args], check=True, capture_output=True, text=True).stdout


def test_accuracy(folder: Path, seed: int, extra: list[str]) -> float:
    model = folder.parent / f"{folder.name}-model"
    grutext("train", str(folder), "-o", str(model), "--seed", str(seed), "--overwrite", *extra)
    return float(json.loads((model / "metrics.json").read_text())["test"]["accuracy"])


def measure(
    data: Path | None, name: str, seed: int, share: float, rows: int, work: Path, vectors: Path | None
) -> dict[str, Any]:
    train, test = load(data, name, rows, seed)
    noisy, flipped = flip(train, share, seed)
    extra = ["--vectors", str(vectors)] if vectors else []
    base = work / f"{name}-{seed}" / ("vectors" if vectors else "defaults")
    clean_dir, noisy_dir = write(base / "clean", train, test), write(base / "noisy", noisy, test)
    out = grutext("audit", str(noisy_dir / "train.jsonl"), "--format", "jsonl", "--seed", str(seed), *extra)
    flagged = {json.loads(line)["row"] for line in out.splitlines()}
    kept = [r for i, r in enumerate(noisy, 1) if i not in flagged]
    cleaned_dir = write(base / "cleaned", kept, test)
    hits = len(flagged & flipped)
    clean, dirty, cleaned = (test_accuracy(d, seed, extra) for d in (clean_dir, noisy_dir, cleaned_dir))
    return {
        "dataset": name,
        "seed": seed,
        "vectors": vectors.name if vectors else None,
        "rows": len(train),
        "flipped": len(flipped),
        "flagged": len(flagged),
        "precision": hits / max(len(flagged), 1),
        "recall": hits / max(len(flipped), 1),
        "clean": clean,
        "noisy": dirty,
        "cleaned": cleaned,
        # the share of the accuracy lost to the noise that the cleaning wins back: only where the noise cost
        # at least half a point (else it is the ratio of two noises)
        "recovered": (cleaned - dirty) / (clean - dirty) if clean - dirty >= 0.005 else None,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| set | seeds | rows | flipped | flagged | precision | recall | test: clean | noisy | noisy minus flagged "
        "| share of the loss won back |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, got in grouped(rows, lambda r: (r["dataset"], r.get("vectors"))).items():

        def mean(field: str, got: list[dict[str, Any]] = got) -> float:
            return statistics.mean(r[field] for r in got)

        won = [r["recovered"] for r in got if r["recovered"] is not None]
        recovered = f"{statistics.mean(won):.2f}" if won else "- (the noise cost < 0.5 points)"
        name = key[0] + (" with --vectors" if key[1] else "")
        lines.append(
            f"| {name} | {len(got)} | {got[0]['rows']:,} | {mean('flipped'):.0f} | {mean('flagged'):.0f} "
            f"| {mean('precision'):.3f} | {mean('recall'):.3f} | {mean('clean'):.4f} | {mean('noisy'):.4f} "
            f"| {mean('cleaned'):.4f} | {recovered} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder of <name>/{train,test}.jsonl (not needed for trec-like)")
    parser.add_argument("--datasets", default="sst2,trec-like")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--share", type=float, default=0.1, help="share of training labels flipped")
    parser.add_argument("--rows", type=int, default=10_000, help="training rows sampled from a real set")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "grutext-audit-noise")
    parser.add_argument("--out", type=Path, default=Path("audit_noise.jsonl"))
    parser.add_argument("--vectors", type=Path, help="pretrained vectors for the audit and the three models")
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--doc", type=Path, help="replace the table between the audit markers in this file")
    args = parser.parse_args()
    rows = saved_rows(args.out)
    if not args.table:
        tag = args.vectors.name if args.vectors else None
        done = {(r["dataset"], r["seed"], r.get("vectors")) for r in rows}
        for name in args.datasets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                if (name, seed, tag) in done:
                    continue
                row = measure(args.data, name, seed, args.share, args.rows, args.work, args.vectors)
                save_row(args.out, row, rows)
    text = table(rows)
    print(text)
    if args.doc:
        doc = args.doc.read_text(encoding="utf-8")
        start, end = "<!-- audit:start -->", "<!-- audit:end -->"
        head, rest = doc.split(start, 1)
        args.doc.write_text(f"{head}{start}\n{text}\n{end}{rest.split(end, 1)[1]}", encoding="utf-8")


if __name__ == "__main__":
    main()
