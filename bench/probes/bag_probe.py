"""Probe: what makes fastText's bag of words stronger than grutext's bigram head on short texts?

    python bench/probes/bag_probe.py --data DATA --datasets mr,mpqa --seeds 13,14,15 \
        --variant min2:2:0 --variant min1:1:0 --variant min1+chars:1:2-4 --variant min2+vocab-chars:2:2-4v

A stand-alone fastText-like classifier on grutext's validation carve: the mean of a table's rows for a text's
words (those seen at least MIN times in training), its hashed word bigrams and, optionally, the hashed
character n-grams of its words (fastText's minn-maxn, with < and > around each word; a trailing "v" takes them
for the words with a row only, as a table indexed by grutext's vocabulary could), then one linear layer. It is
trained as grutext trains its head (AdamW at lr 0.004, batches of 32, linear decay, 50,000 buckets of 32);
the epoch with the best validation accuracy is kept and its test accuracy reported. Each --variant is
NAME:MIN:NGRAMS with NGRAMS "0" for none. One JSON line per run on stdout, a table of the means at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import patching  # noqa: F401 - puts bench/ on the path
import torch
from results import fasttext_tokens
from torch import nn

from grutext.data import Split, carve_validation


def read(path: Path) -> Split:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return Split([r["text"] for r in rows], [[str(r["label"])] for r in rows], path.name)


def features(
    words: list[str], vocab: dict[str, int], buckets: int, ngrams: tuple[int, int], vocab_only: bool
) -> list[int]:
    """Row ids: known words, then hashed bigrams and character n-grams in the buckets after the vocabulary."""
    size = len(vocab)
    out = [vocab[w] for w in words if w in vocab]
    out += [size + zlib.crc32(f"{a} {b}".encode()) % buckets for a, b in itertools.pairwise(words)]
    low, high = ngrams
    for word in words if high else []:
        if vocab_only and word not in vocab:
            continue
        marked = f"<{word}>"
        for n in range(low, high + 1):
            out += [size + zlib.crc32(f"#{marked[i : i + n]}".encode()) % buckets for i in range(len(marked) - n + 1)]
    return out or [size + buckets]  # an empty text reads one spare row


def run(train: Split, val: Split, test: Split, seed: int, min_count: int, ngrams: str, args: Any) -> dict[str, Any]:
    torch.manual_seed(seed)
    counts = Counter(w for t in train.texts for w in fasttext_tokens(t).split())
    vocab = {w: i for i, w in enumerate(w for w, c in counts.items() if c >= min_count)}
    vocab_only = ngrams.endswith("v")
    span = (0, 0) if ngrams == "0" else tuple(int(n) for n in ngrams.rstrip("v").split("-"))
    labels = sorted({row[0] for row in train.labels})

    def encode(split: Split) -> tuple[list[list[int]], torch.Tensor]:
        rows = [features(fasttext_tokens(t).split(), vocab, args.buckets, span, vocab_only) for t in split.texts]  # type: ignore[arg-type]
        return rows, torch.tensor([labels.index(row[0]) for row in split.labels])

    (xtr, ytr), (xva, yva), (xte, yte) = encode(train), encode(val), encode(test)
    table = nn.EmbeddingBag(len(vocab) + args.buckets + 1, args.dim, mode="mean")
    nn.init.uniform_(table.weight, -1 / args.dim, 1 / args.dim)
    out = nn.Linear(args.dim, len(labels))
    params = [*table.parameters(), *out.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, fused=True)

    def logits(x: list[list[int]], index: list[int]) -> torch.Tensor:
        flat = torch.tensor([f for i in index for f in x[i]])
        offsets = torch.tensor([0, *torch.tensor([len(x[i]) for i in index[:-1]]).cumsum(0).tolist()])
        return out(table(flat, offsets))  # type: ignore[no-any-return]

    def accuracy(x: list[list[int]], y: torch.Tensor) -> float:
        with torch.no_grad():
            return float((logits(x, list(range(len(x)))).argmax(1) == y).float().mean())

    steps = args.epochs * -(-len(xtr) // 32)
    rng, step, curve = random.Random(seed), 0, []
    for _ in range(args.epochs):
        order = list(range(len(xtr)))
        rng.shuffle(order)
        for k in range(0, len(order), 32):
            index = order[k : k + 32]
            for group in optimizer.param_groups:
                group["lr"] = args.lr * (1 - step / steps)
            loss = nn.functional.cross_entropy(logits(xtr, index), ytr[index])
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            step += 1
        curve.append((accuracy(xva, yva), accuracy(xte, yte)))
    best = max(range(len(curve)), key=lambda e: curve[e][0])
    return {"vocab": len(vocab), "best_epoch": best + 1, "val": curve[best][0], "test": curve[best][1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--datasets", required=True)
    parser.add_argument("--seeds", default="13,14,15")
    parser.add_argument("--variant", action="append", required=True, help="NAME:MIN:NGRAMS, e.g. min1+chars:1:2-4")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.004)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--buckets", type=int, default=50_000)
    args = parser.parse_args()
    rows = []
    for name in args.datasets.split(","):
        full, test = read(args.data / name / "train.jsonl"), read(args.data / name / "test.jsonl")
        for seed in (int(s) for s in args.seeds.split(",")):
            train, val = carve_validation(full, 0.1, seed)
            for variant in args.variant:
                label, min_count, ngrams = variant.split(":")
                row = {"dataset": name, "variant": label, "seed": seed}
                row |= run(train, val, test, seed, int(min_count), ngrams, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("| dataset | variant | validation | test |\n|---|---|---:|---:|")
    for name in args.datasets.split(","):
        for variant in args.variant:
            group = [r for r in rows if r["dataset"] == name and r["variant"] == variant.split(":")[0]]
            val, test = statistics.mean(r["val"] for r in group), statistics.mean(r["test"] for r in group)
            print(f"| {name} | {variant.split(':')[0]} | {val:.4f} | {test:.4f} |")


if __name__ == "__main__":
    main()
