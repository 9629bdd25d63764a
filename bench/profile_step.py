"""Where one training step's time goes: forward, backward, gradient clipping, optimizer update.

    python bench/profile_step.py --data ../shared/data --dataset sst2 --no-bidirectional

Trains the library's model on the first --steps length-bucketed batches of the dataset's training split,
exactly as `grutext train` does on the CPU (same tokenizer, batching, loss, clipping, fused AdamW for the
dense weights and LazyAdamW for the embedding table), and prints the median milliseconds of each phase per
step; the second row runs torch's fused AdamW over every weight instead, as grutext did before LazyAdamW
(and still does on a GPU), so the two rows show what the lazy row updates save.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from grutext.batching import bucket_batches, collate
from grutext.config import SINGLE_LABEL_LR, ModelConfig, TokenizerConfig
from grutext.data import load_labelled
from grutext.model import GRUClassifier
from grutext.optim import TrainingOptimizer
from grutext.scan import use_cpu_threads
from grutext.tokenizer import encode, train_tokenizer
from grutext.train import clip_gradients

PHASES = ("forward", "backward", "clip", "optimizer")


def profile(
    ids: list[list[int]], y: torch.Tensor, cfg: ModelConfig, batches: list[list[int]], lazy_rows: bool
) -> dict[str, float]:
    torch.manual_seed(0)
    model = GRUClassifier(cfg).train()
    params = list(model.parameters())
    optimizer = TrainingOptimizer(params, model.embedding, lr=SINGLE_LABEL_LR, weight_decay=0.01, lazy_rows=lazy_rows)
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for index in batches:
        t0 = time.perf_counter()
        batch = collate(ids, index)
        optimizer.prepare(batch.ids)
        loss = nn.functional.cross_entropy(model(batch.ids, batch.lengths), y[batch.index])
        t1 = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        t2 = time.perf_counter()
        clip_gradients(optimizer.gradients(), 1.0)
        t3 = time.perf_counter()
        optimizer.step()
        loss.item()
        t4 = time.perf_counter()
        for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[phase].append(seconds)
    return {phase: 1000 * statistics.median(values) for phase, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-bidirectional", dest="bidirectional", action="store_false")
    args = parser.parse_args()

    use_cpu_threads()
    train = load_labelled(str(args.data / args.dataset)).splits["train"]
    labels = sorted({name for row in train.labels for name in row})
    y = torch.tensor([labels.index(row[0]) for row in train.labels])
    tok_cfg = TokenizerConfig()
    tokenizer = train_tokenizer(train.texts, tok_cfg)
    ids = encode(tokenizer, train.texts, tok_cfg)
    batches = bucket_batches([len(r) for r in ids], args.batch_size, random.Random(1))[: args.steps]
    cfg = ModelConfig(tokenizer.get_vocab_size(), len(labels), bidirectional=args.bidirectional)
    tokens = sum(max(1, len(ids[i])) for b in batches for i in b) / len(batches)
    print(f"{args.dataset}: {len(batches)} steps of {args.batch_size} texts, {tokens:.0f} tokens a step")
    print("| optimizer | " + " | ".join(f"{p} ms" for p in PHASES) + " | step ms |")
    print("|---" * (len(PHASES) + 2) + "|")
    for lazy_rows in (True, False):
        ms = profile(ids, y, cfg, batches, lazy_rows)
        who = "LazyAdamW rows + fused AdamW (grutext, CPU)" if lazy_rows else "fused AdamW over every weight"
        print(f"| {who} | " + " | ".join(f"{ms[p]:.2f}" for p in PHASES) + f" | {sum(ms.values()):.2f} |")


if __name__ == "__main__":
    main()
