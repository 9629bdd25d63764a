"""Probe: each of the default model's two heads on its own, and ways of combining them.

    python bench/probes/head_probe.py --data DATA --datasets mr,mpqa,subj --seeds 13,14,15 [--alpha 0.25]

Trains the library's default model (the GRU's head and the bigram head) and, at every validation pass, keeps
both heads' logits apart, on validation and on test. One JSON line per run:
  * w0.0 .. w1.0: validation / test accuracy of the kept model with the bag head's logits weighted w and the
    GRU's 1 - w (the library averages them: w0.5);
  * sep: each head kept at the epoch where it alone scored best on validation, then averaged;
  * epoch_val_gru, epoch_val_bag: each head's validation accuracy, epoch by epoch.
--alpha scales the bag (and divides its starting rows by the same), which under Adam scales the bigram
table's learning rate by alpha. Everything else is `grutext train`'s default.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from patching import require
from sweep import configs

import grutext.training as training
from grutext.config import DataShape, ModelConfig
from grutext.model import GRUClassifier

BOTH: list[bool] = [False]  # infer both heads' logits side by side, as a training forward returns them


def patch(alpha: float, calls: list[tuple[torch.Tensor, torch.Tensor]], y: dict[str, Any]) -> None:
    forward, bag, init = GRUClassifier.forward, GRUClassifier.bigram_bag, GRUClassifier.__init__
    infer, fit = training._infer, training.fit

    def both_forward(self: GRUClassifier, ids: torch.Tensor, lengths: torch.Tensor, *grams: Any) -> torch.Tensor:
        if not BOTH[0]:
            return forward(self, ids, lengths, *grams)
        self.training = True  # the side-by-side branch; the dropout modules stay in eval mode
        try:
            return forward(self, ids, lengths, *grams)
        finally:
            self.training = False

    def scaled_init(self: GRUClassifier, cfg: ModelConfig, shape: DataShape, device: Any = None) -> None:
        init(self, cfg, shape, device)
        if self.cfg.bigram_buckets:
            with torch.no_grad():
                self.bigram_table.weight.div_(alpha)

    def scaled_bag(self: GRUClassifier, ids: torch.Tensor, lengths: torch.Tensor, *grams: Any) -> torch.Tensor:
        return alpha * bag(self, ids, lengths, *grams)

    def both_infer(model: GRUClassifier, ids: Any, device: torch.device, group: Any, grams: Any = None) -> torch.Tensor:
        BOTH[0] = True
        try:
            logits = infer(model, ids, device, group, grams)
            if ids is not y["test_ids"]:  # a validation pass: test's logits at the same weights
                calls.append((logits, infer(model, y["test_ids"], device, group)))
        finally:
            BOTH[0] = False
        half = logits.size(1) // 2
        return (logits[:, :half] + logits[:, half:]) / 2

    def keep_targets(*args: Any, **kwargs: Any) -> str:
        y.update(args[6], test_ids=args[5]["test"])  # fit(runner, model, optimizer, loop, best, ids, y, ...)
        return fit(*args, **kwargs)  # type: ignore[no-any-return]

    GRUClassifier.forward = both_forward  # type: ignore[method-assign]
    GRUClassifier.__init__ = scaled_init  # type: ignore[method-assign]
    GRUClassifier.bigram_bag = scaled_bag  # type: ignore[method-assign]
    training._infer = both_infer
    training.fit = keep_targets


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    return round(float((logits.argmax(1) == target).float().mean()), 4)


def main() -> None:
    require(training, "_infer", "fit")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--datasets", required=True)
    parser.add_argument("--seeds", default="13,14,15")
    parser.add_argument("--alpha", type=float, default=1.0)
    args = parser.parse_args()
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    y: dict[str, Any] = {}
    patch(args.alpha, calls, y)
    for name in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            calls.clear()
            tok, model, trn = configs({"seed": seed, "char_ngrams": "0"})  # the head as it was measured
            with tempfile.TemporaryDirectory() as tmp:
                result = training.train(training.DataSpec(str(args.data / name)), tok, model, trn, Path(tmp) / "m")
            epochs, (val, test) = calls[:-1], calls[-1]  # the last pass scores the kept model
            c = val.size(1) // 2
            yv, yt = y["validation"], y["test"]
            row: dict[str, Any] = {"alpha": args.alpha, "dataset": name, "seed": seed}
            row["best_epoch"] = result.metrics["best_epoch"]
            for w in (0.0, 0.25, 0.5, 0.75, 1.0):
                row[f"w{w}"] = [accuracy((1 - w) * p[:, :c] + w * p[:, c:], t) for p, t in ((val, yv), (test, yt))]
            gru = [accuracy(v[:, :c], yv) for v, _ in epochs]
            bag = [accuracy(v[:, c:], yv) for v, _ in epochs]
            i, j = gru.index(max(gru)), bag.index(max(bag))
            both = [(epochs[i][k][:, :c] + epochs[j][k][:, c:]) for k in (0, 1)]
            row["sep"] = [accuracy(both[0], yv), accuracy(both[1], yt)]
            row["sep_epochs"] = [i + 1, j + 1]
            row["epoch_val_gru"], row["epoch_val_bag"] = gru, bag
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
