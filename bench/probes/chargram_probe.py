"""Probe: the default model with hashed character n-grams of words added to the bigram head's bag.

    python bench/probes/chargram_probe.py --data DATA --datasets mr,mpqa --seeds 13,14,15 --variant oov:2-4

fastText's bag wins on short texts with the character n-grams of words the vocabulary lacks (see
bench/probes/bag_probe.py). This trains the library's default model (`grutext train`'s settings) with the head's
bag also reading, for each word the tokenizer's own normalizer and pre-tokenizer find, the rows of its
character n-grams (fastText's, with < and > around the word), hashed into the same buckets as the word
bigrams. Variants, NAME:NGRAMS: NAME "oov" takes them for the words without a vocabulary row only, "all" for
every word; NGRAMS "0" adds none (the default model). One JSON line per run: validation and test accuracy
of the kept model.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import zlib
from pathlib import Path
from typing import Any

import torch
from patching import require
from sweep import configs

import grutext.batching as batching
import grutext.training as training
from grutext.model import GRUClassifier, bigram_ids

REGISTRY: dict[int, list[list[int]]] = {}  # id(encoded rows) -> each text's n-gram rows
CURRENT: list[list[list[int]] | None] = [None]  # the n-gram rows of the batch just collated
SPEC: dict[str, Any] = {}


def grams(tokenizer: Any, text: str, vocab_size: int, buckets: int) -> list[int]:
    low, high, oov = SPEC["low"], SPEC["high"], SPEC["oov"]
    words = tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text))[:512]
    out: list[int] = []
    for word, _ in words:
        if oov and tokenizer.token_to_id(word) is not None:
            continue
        marked = f"<{word}>"
        for n in range(low, high + 1):
            out += [
                vocab_size + zlib.crc32(f"#{marked[i : i + n]}".encode()) % buckets for i in range(len(marked) - n + 1)
            ]
    return out


def patch() -> None:
    encode, collate, bag = training.encode, batching.collate, GRUClassifier.bigram_bag

    def encode_with_grams(tokenizer: Any, texts: Any, cfg: Any) -> list[list[int]]:
        rows = encode(tokenizer, texts, cfg)
        if SPEC["high"]:
            size = tokenizer.get_vocab_size()
            REGISTRY[id(rows)] = [grams(tokenizer, t, size, 50_000) for t in texts]
        return rows

    def collate_with_grams(ids: Any, index: Any) -> Any:
        batch = collate(ids, index)
        found = REGISTRY.get(id(ids))
        CURRENT[0] = None if found is None else [found[i] for i in index]
        return batch

    def bag_with_grams(self: GRUClassifier, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        extra = CURRENT[0]
        if extra is None or not any(extra):
            return bag(self, ids, lengths)
        # one lookup of the table for all rows: the fast backend's LazyAdamW prepares the rows of each call
        width, size = max(len(r) for r in extra), self.shape.vocab_size
        padded = torch.tensor([r + [0] * (width - len(r)) for r in extra], device=ids.device)
        count = torch.tensor([len(r) for r in extra], device=ids.device)
        position = torch.arange(ids.size(1), device=ids.device)
        pairs = bigram_ids(ids, size, self.bigram_table.num_embeddings - size)
        rows = torch.cat([ids, pairs, padded], dim=1)
        real = torch.cat(
            [
                position[None, :] < lengths[:, None],
                position[None, 1:] < lengths[:, None],
                torch.arange(width, device=ids.device)[None, :] < count[:, None],
            ],
            dim=1,
        )
        mask = real.unsqueeze(-1).to(self.bigram_table.weight.dtype)
        return (self.bigram_table(rows) * mask).sum(dim=1) / mask.sum(dim=1)

    training.encode = encode_with_grams  # type: ignore[assignment]
    training.collate = collate_with_grams
    batching.collate = collate_with_grams
    GRUClassifier.bigram_bag = bag_with_grams  # type: ignore[method-assign]


def main() -> None:
    require(training, "encode", "collate")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--datasets", required=True)
    parser.add_argument("--seeds", default="13,14,15")
    parser.add_argument("--variant", action="append", required=True, help="NAME:NGRAMS, e.g. oov:2-4 or all:3-6")
    args = parser.parse_args()
    patch()
    for name in args.datasets.split(","):
        for variant in args.variant:
            label, span = variant.split(":")
            low, high = (0, 0) if span == "0" else (int(n) for n in span.split("-"))
            SPEC.update(low=low, high=high, oov=label == "oov")
            for seed in (int(s) for s in args.seeds.split(",")):
                REGISTRY.clear()
                tok, model, trn = configs({"seed": seed, "char_ngrams": "0"})  # the probe's n-grams only
                with tempfile.TemporaryDirectory() as tmp:
                    data = training.DataSpec(str(args.data / name))
                    result = training.train(data, tok, model, trn, Path(tmp) / "m")
                m = result.metrics
                row = {"dataset": name, "variant": variant, "seed": seed, "best_epoch": m["best_epoch"]}
                row |= {
                    "val": m["validation"]["accuracy"],
                    "test": m["test"]["accuracy"],
                    "seconds": m["train_seconds"],
                }
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
