"""Where one training step's time goes: forward, backward, gradient clipping, optimizer update.

    python bench/profile_step.py --data DATA --dataset sst2 --no-bidirectional

Trains the library's model on the first --steps length-bucketed batches of the dataset's training split,
exactly as `grutext train` does (same tokenizer, batching, loss, clipping and optimizer), and prints the median
milliseconds of each phase per
step, on each backend: the fast CPU path (grutext.fast), and the reference (nn.GRU, torch.optim.AdamW,
nn.Dropout), which a GPU runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from grutext.backend import make_optimizer, prepare
from grutext.batching import bucket_batches, collate
from grutext.config import SINGLE_LABEL_LR, DataShape, ModelConfig, TokenizerConfig
from grutext.data import load_labelled
from grutext.model import GRUClassifier
from grutext.tokenizer import encode, train_tokenizer

PHASES = ("forward", "backward", "clip + optimizer")


def profile(
    ids: list[list[int]], y: torch.Tensor, cfg: ModelConfig, shape: DataShape, batches: list[list[int]], backend: str
) -> dict[str, float]:
    torch.manual_seed(0)
    model = prepare(GRUClassifier(cfg, shape), torch.device("cpu"), backend).train()
    optimizer = make_optimizer(
        model, backend, lr=SINGLE_LABEL_LR, weight_decay=0.01, grad_clip=1.0, total_steps=len(batches), warmup=0.05
    )
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for index in batches:
        t0 = time.perf_counter()
        batch = collate(ids, index)
        loss = nn.functional.cross_entropy(model(batch.ids, batch.lengths), y[batch.index])
        t1 = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        t2 = time.perf_counter()
        optimizer.step()  # clip + update + schedule
        loss.item()
        t3 = time.perf_counter()
        for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            times[phase].append(seconds)
    return {phase: 1000 * statistics.median(values) for phase, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <name>/{train,validation,test}.jsonl")
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-bidirectional", dest="bidirectional", action="store_false")
    args = parser.parse_args()

    torch.set_num_threads(1)  # as the CLI does for the fast backend
    train = load_labelled(str(args.data / args.dataset)).splits["train"]
    labels = sorted({name for row in train.labels for name in row})
    y = torch.tensor([labels.index(row[0]) for row in train.labels])
    tok_cfg = TokenizerConfig()
    tokenizer = train_tokenizer(train.texts, tok_cfg)
    ids = encode(tokenizer, train.texts, tok_cfg)
    batches = bucket_batches([len(r) for r in ids], args.batch_size, random.Random(1))[: args.steps]
    # the default model without character n-grams (this profile feeds token ids only)
    cfg = ModelConfig(bidirectional=args.bidirectional, char_ngrams="0").resolved_for(False, "word")
    shape = DataShape(tokenizer.get_vocab_size(), len(labels))
    tokens = sum(max(1, len(ids[i])) for b in batches for i in b) / len(batches)
    print(f"{args.dataset}: {len(batches)} steps of {args.batch_size} texts, {tokens:.0f} tokens a step")
    print("| backend | " + " | ".join(f"{p} ms" for p in PHASES) + " | step ms |")
    print("|---" * (len(PHASES) + 2) + "|")
    for backend in ("fast", "reference"):
        ms = profile(ids, y, cfg, shape, batches, backend)
        who = {"fast": "fast backend (scan, LazyAdamW rows + fused AdamW)", "reference": "reference backend"}[backend]
        print(f"| {who} | " + " | ".join(f"{ms[p]:.2f}" for p in PHASES) + f" | {sum(ms.values()):.2f} |")


if __name__ == "__main__":
    main()
