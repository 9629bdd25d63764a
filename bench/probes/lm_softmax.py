"""Which softmax a CPU can afford for the language model over a 30,000-word vocabulary: a training step's time
(forward, backward, AdamW) with the full softmax over tied weights, torch's adaptive softmax, and grutext's
sampled softmax, on batches of imdb-like windows, interleaved in one process.

    python bench/probes/lm_softmax.py --steps 20

The encoder is the default one (bidirectional GRU 128, embedding 128) on the reference backend, so that the three
differ only in their output layer; tokens/s counts the tokens predicted (both directions).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from grutext.config import ModelConfig
from grutext.lm import LanguageModel

V, B, T = 30_000, 32, 128


class Full(nn.Module):
    """A full softmax over the input table's own rows (tied weights): the exact loss, 30,000 x E a token."""

    def __init__(self, lm: LanguageModel) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hidden, targets = self.lm.states(ids, lengths)
        logits = self.lm.project(hidden) @ self.lm.embedding.weight.T + self.lm.output_bias
        return nn.functional.cross_entropy(logits, targets)


class Adaptive(nn.Module):
    """torch's adaptive softmax (Grave et al. 2017): the 2,000 commonest words in its head, the rest in two
    clusters of lower dimension. Needs ids in frequency order, which a Zipf-distributed batch has here."""

    def __init__(self, lm: LanguageModel) -> None:
        super().__init__()
        self.lm = lm
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(lm.cfg.embedding_size, V, cutoffs=[2000, 10000], div_value=4.0)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hidden, targets = self.lm.states(ids, lengths)
        return self.softmax(self.lm.project(hidden), targets).loss


class Sampled(nn.Module):
    """grutext's: 512 words drawn for the step from unigram^0.75, corrected by their expected counts."""

    def __init__(self, lm: LanguageModel, proposal: torch.Tensor) -> None:
        super().__init__()
        self.lm, self.proposal = lm, proposal
        self.log_expected = torch.log(512 * proposal)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        negatives = torch.multinomial(self.proposal, 512, replacement=True)
        loss: torch.Tensor = self.lm(ids, lengths, negatives, self.log_expected)
        return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    zipf = 1.0 / torch.arange(1, V + 1, dtype=torch.float64)
    zipf[0] = 0.0
    unigram = (zipf / zipf.sum()).float()
    proposal = unigram**0.75 / (unigram**0.75).sum()
    cfg = ModelConfig().resolved_for(False, "bpe")
    models = {
        "full (tied weights)": Full(LanguageModel(cfg, V)),
        "adaptive (2k/10k cutoffs)": Adaptive(LanguageModel(cfg, V)),
        "sampled (512 words)": Sampled(LanguageModel(cfg, V), proposal),
    }
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-3) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(args.steps + 2):
        ids = torch.multinomial(unigram, B * T, replacement=True).view(B, T)
        lengths = torch.full((B,), T)
        for name, model in models.items():  # interleaved: each step's batch through each in turn
            start = time.perf_counter()
            loss = model(ids, lengths)
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()
            if step >= 2:  # the first two warm up
                times[name].append(time.perf_counter() - start)
    predicted = 2 * B * (T - 1)
    print("| output layer | step ms (median) | tokens/s | against sampled |")
    print("|---|---:|---:|---:|")
    sampled = statistics.median(times["sampled (512 words)"])
    for name, spent in times.items():
        median = statistics.median(spent)
        print(f"| {name} | {median * 1000:.0f} | {predicted / median:,.0f} | {median / sampled:.2f}x |")


if __name__ == "__main__":
    main()
