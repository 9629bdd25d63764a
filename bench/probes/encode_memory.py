"""How much memory encoding a split takes and keeps: RSS before, after encode_inputs, and after glibc's
malloc_trim hands freed memory back.

    python bench/probes/encode_memory.py --model MODEL --data DATA/imdb/test.jsonl.gz
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import json
from pathlib import Path


def rss_mib() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("VmRSS:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="a jsonl file (or .jsonl.gz) with a text field")
    args = parser.parse_args()

    from grutext.artifacts import read_meta
    from grutext.tokenizer import encode_inputs

    meta = read_meta(args.model)
    opener = gzip.open if args.data.suffix == ".gz" else open
    with opener(args.data, "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    before = rss_mib()
    ids, grams = encode_inputs(meta.tokenizer, texts, meta.tokenizer_config, meta.model_config)
    after = rss_mib()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    trimmed = rss_mib()
    grams_mb = grams.nbytes / 1e6 if grams is not None else 0.0
    print(f"{len(texts):,} texts: RSS {before} MiB before, {after} after encoding, {trimmed} after malloc_trim")
    print(f"ids {ids.nbytes / 1e6:.0f} MB, n-grams {grams_mb:.0f} MB")


if __name__ == "__main__":
    main()
