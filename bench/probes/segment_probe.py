"""Probe: Chinese word vectors behind a word segmenter (jieba), against the library's one-character words.

    python bench/probes/segment_probe.py --data DATA --datasets chnsenticorp --seeds 13,14,15 \
        --vectors VECTORS.txt.gz --variant chars --variant chars+vectors --variant jieba --variant jieba+vectors

grutext reads Chinese one character a word (its normalizer puts a space around every ideograph), so Chinese
word vectors, trained on segmented text, give it their single-character rows only. This probe asks what the
whole words would give: a `jieba` variant segments every split with jieba (`pip install jieba`), joins the
words with spaces, and trains with a normalizer that leaves ideographs together, so each segmented word is a
token and can take its vector's row. `chars` is the library as it is. `+vectors` adds `--vectors FILE`. Every
other setting is the library default. One JSON line per run: validation and test accuracy of the kept model,
the vectors' coverage and the training time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import patching  # noqa: F401 - puts bench/ on the path
from sweep import run_one
from tokenizers import Tokenizer, normalizers

import grutext.tokenizer as tokenizer_module
from grutext.config import TokenizerConfig

LIBRARY_FRONT_END = tokenizer_module._front_end


def _words_kept_whole(tokenizer: Tokenizer, cfg: TokenizerConfig) -> None:
    """The library's front end, except that ideographs get no space around them: jieba's spaces decide."""
    LIBRARY_FRONT_END(tokenizer, cfg)
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=cfg.lowercase
            ),
        ]
    )


@contextmanager
def front_end(segmented: bool) -> Iterator[None]:
    tokenizer_module._front_end = _words_kept_whole if segmented else LIBRARY_FRONT_END  # type: ignore[assignment]
    try:
        yield
    finally:
        tokenizer_module._front_end = LIBRARY_FRONT_END


def segment(source: Path, target: Path) -> None:
    """Every split of `source` with its texts cut into jieba's words, joined by single spaces."""
    import jieba

    jieba.setLogLevel(60)
    target.mkdir(parents=True)
    for split in source.glob("*.jsonl"):
        with split.open(encoding="utf-8") as fin, (target / split.name).open("w", encoding="utf-8") as fout:
            for line in fin:
                row = json.loads(line)
                row["text"] = " ".join(w for w in jieba.lcut(row["text"]) if w.strip())
                fout.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <name>/{train,validation,test}.jsonl")
    parser.add_argument("--datasets", required=True, help="comma-separated folder names under --data")
    parser.add_argument("--seeds", default="13", help="comma-separated seeds")
    parser.add_argument("--vectors", help="the Chinese word vectors, for the +vectors variants")
    parser.add_argument(
        "--variant", action="append", choices=["chars", "chars+vectors", "jieba", "jieba+vectors"], required=True
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/segment_probe.jsonl"))
    args = parser.parse_args()
    if any(v.endswith("+vectors") for v in args.variant) and not args.vectors:
        parser.error("the +vectors variants need --vectors FILE")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            if any(v.startswith("jieba") for v in args.variant):
                segment(args.data / dataset, Path(tmp) / dataset)
            for seed in (int(s) for s in args.seeds.split(",")):
                for variant in args.variant:
                    segmented = variant.startswith("jieba")
                    settings: dict[str, Any] = {"seed": seed}
                    if variant.endswith("+vectors"):
                        settings["vectors"] = args.vectors
                    with front_end(segmented):
                        row = run_one(Path(tmp) if segmented else args.data, dataset, settings)
                    row["variant"] = variant
                    print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)
                    with args.out.open("a") as fh:
                        fh.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
