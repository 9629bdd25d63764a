"""Probe: a fastText-like bag of hashed word bigrams beside the GRU, with its own loss.

    python bench/probes/bigram_head_probe.py --data DATA --datasets mr,mpqa,subj --seeds 13,14,15 [--alpha 1]

The bag (token ids and hashed bigrams of adjacent ids, mean-pooled from a table of vocabulary + --buckets
rows of --dim) feeds its own linear layer. Unlike a path concatenated beside the encoder (whose single head
leans on the GRU), each head here is trained by its own loss, so the bag learns as a fastText model would; the
two heads' logits are averaged at inference and for early stopping. --alpha scales the bag, which under Adam
scales its effective learning rate. Everything else is the library default (bench/sweep.py's run_one); compare
with `bench/sweep.py` rows for the same seeds. One JSON line per run on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from patching import require
from sweep import run_one
from torch import nn

import grutext.training as training
from grutext.config import DataShape, ModelConfig
from grutext.model import GRUClassifier


def with_bag(buckets: int, dim: int, alpha: float) -> type[GRUClassifier]:
    class WithBag(GRUClassifier):
        def __init__(self, cfg: ModelConfig, shape: DataShape, device: Any = None) -> None:
            super().__init__(cfg, shape, device)
            self.bag = nn.Embedding(shape.vocab_size + buckets, dim, device=device)
            nn.init.uniform_(self.bag.weight, -1 / dim, 1 / dim)
            self.bag_out = nn.Linear(dim, shape.num_labels, device=device)

        def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            rnn = super().forward(ids, lengths)
            position = torch.arange(ids.size(1), device=ids.device)
            bigrams = (ids[:, :-1] * 1_000_003 + ids[:, 1:]) % buckets + self.shape.vocab_size
            grams = torch.cat([ids, bigrams], 1)  # [B, 2T-1]
            mask = torch.cat([position[None, :] < lengths[:, None], position[None, 1:] < lengths[:, None]], 1)
            mask = mask.float()[..., None]
            bag = self.bag_out(alpha * (self.bag(grams) * mask).sum(1) / mask.sum(1))
            if not self.training:
                return (rnn + bag) / 2
            both = torch.cat([rnn, bag], 1)
            both.heads = rnn.size(1)  # type: ignore[attr-defined]
            return both

    return WithBag


def two_losses(original: Any) -> Any:
    """Task.loss that, given both heads' logits side by side, sums each head's own loss."""

    def loss(self: Any, logits: torch.Tensor, target: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:
        split = getattr(logits, "heads", None)
        if split is None:
            return original(self, logits, target, normalizer)  # type: ignore[no-any-return]
        first = original(self, logits[:, :split], target, normalizer)
        return first + original(self, logits[:, split:], target, normalizer)  # type: ignore[no-any-return]

    return loss


def main() -> None:
    require(training, "GRUClassifier", "Task")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <name>/{train,test}.jsonl")
    parser.add_argument("--datasets", required=True)
    parser.add_argument("--seeds", default="13,14,15")
    parser.add_argument("--buckets", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--alpha", type=float, default=1.0)
    args = parser.parse_args()
    training.GRUClassifier = with_bag(args.buckets, args.dim, args.alpha)  # type: ignore[misc]
    training.Task.loss = two_losses(training.Task.loss)  # type: ignore[method-assign]
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.datasets.split(","):
            row = run_one(args.data, name, {"seed": seed})
            row["probe"] = {"buckets": args.buckets, "dim": args.dim, "alpha": args.alpha}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
