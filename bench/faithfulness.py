"""How faithful grutext explain's attributions are: ERASER's comprehensiveness on real test sentences.

    python bench/faithfulness.py --model models/sst2 --data DATA/sst2 --texts 150

Deleting each sentence's two most-attributed tokens should lower the predicted label's probability far more
than deleting two random tokens (DeYoung et al. 2020). Prints both mean falls, their ratio, and the time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from grutext.engine import load_engine
from grutext.explain import comprehensiveness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True, help="a folder with test.jsonl")
    parser.add_argument("--texts", type=int, default=150)
    parser.add_argument("--k", type=int, default=2)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.data / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    model = load_engine(args.model)
    texts = [r["text"] for r in rows if len(model.tokenizer.encode(r["text"]).ids) > args.k][: args.texts]
    start = time.perf_counter()
    top, chance = comprehensiveness(model, texts, args.k)
    seconds = time.perf_counter() - start
    print(
        f"{args.data.name}, {len(texts)} test texts: deleting the top {args.k} tokens lowers the predicted label's "
        f"probability by {top:.3f} on average, {args.k} random tokens by {chance:.3f} "
        f"({top / max(chance, 1e-9):.1f}x); {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
