"""A language model over the classifier's own word table and encoder: `grutext pretrain` trains it on unlabelled
text, and `grutext train --init-from` starts a classifier from its table and encoder (Dai and Le 2015, ULMFiT).

    ids [B, T] -> Embedding [B, T, E] -> encoder [B, T, H] per direction -> projection [B, T, E] -> softmax [V]

The forward direction reads left to right and predicts each next token; the backward one reads right to left and
predicts each previous token (ELMo's two language models). Their parameters carry the classifier's names
(`embedding.weight`, `encoder.*`), so they load into a GRUClassifier of the same settings as they are.

Between stacked layers a classifier feeds both directions the states of both; a language model must not, or the
forward direction would read the future through the backward one's states. So from the second layer on each
direction reads its own states, with zeros where the classifier reads the other direction's (the same weight
shapes; fine-tuning then learns those columns).

A full softmax over a 30,000-word vocabulary costs 30,000 x E multiply-adds a token, some forty times the GRU's own
step. Training uses a sampled softmax instead (Jean et al. 2015): each target is scored against K words drawn once
per step for the whole batch from the corpus's unigram distribution raised to 0.75, each logit corrected by the
log of the word's expected count, a word drawn that is the target itself masked out. The output words have a table
of their own (not tied to the input table), so the fast backend updates the rows a step draws and no others.
Perplexity is measured with the full softmax, on held-out text only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from grutext.config import ModelConfig
from grutext.model import Encoder, TextModel, flat_index, reorder, reversal_index
from grutext.tokenizer import PAD_ID

EVAL_ROWS = 2048  # rows of the full softmax computed at a time when measuring perplexity


class LanguageModel(TextModel):
    """Embedding -> encoder -> per-direction next-token (previous-token) prediction. `forward` returns the
    training loss with a sampled softmax; `log_likelihood` scores text with the full one."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, device: torch.device | str | None = None) -> None:
        super().__init__()
        if not cfg.resolved:
            raise ValueError("build a model from resolved settings: ModelConfig.resolved_for(...)")
        self.cfg, self.vocab_size = cfg, vocab_size
        E = cfg.embedding_size
        meta = device is not None and torch.device(device).type == "meta"
        # On the meta device the shapes alone: torch's normal_ there imports torch._dynamo (1 s).
        table = torch.empty(vocab_size, E, device=device) if meta else None
        words = torch.empty(vocab_size, E, device=device) if meta else None
        self.embedding = nn.Embedding(vocab_size, E, padding_idx=PAD_ID, device=device, _weight=table)
        self.encoder = Encoder(cfg, device)
        self.dropout: nn.Module = nn.Dropout(cfg.dropout)
        self.project = nn.Linear(cfg.hidden_size, E, device=device)  # shared by both directions, as ELMo's softmax
        self.output = nn.Embedding(vocab_size, E, device=device, _weight=words)  # each word's output vector
        if not meta:
            nn.init.normal_(self.output.weight, std=E**-0.5)
        self.output_bias = nn.Parameter(torch.zeros(vocab_size, device=device))

    def tables(self) -> list[nn.Embedding]:
        return [self.embedding, self.output]

    def states(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(states [N, H], targets [N]) of every position that has a token to predict, both directions: position
        t of the forward direction predicts token t + 1; the backward one, run over each text reversed within its
        length, predicts token t + 1 of the reversed text, the previous one of the text."""
        x = self.dropout(self.embedding(ids))  # [B, T, E]
        T = ids.size(1)
        flat = flat_index(reversal_index(lengths, T)) if self.encoder.directions == 2 else None
        runner, layers = self.encoder.runner, self.encoder.forward_layers
        backs = self.encoder.backward_layers
        directions = runner(layers[0], backs[0] if flat is not None else None, x, flat, lengths)  # 1 or 2 x [B, T, H]
        for depth in range(1, len(layers)):  # each direction reads its own states only (see the module doc)
            zeros = torch.zeros_like(directions[0])
            inputs = [torch.cat([directions[0], zeros], -1), torch.cat([zeros, directions[1]], -1)]
            if flat is None:
                inputs = [directions[0]]
            directions = [
                runner(layer, None, self.encoder.dropout(inp), None, lengths)[0]
                for layer, inp in zip([layers[depth], *backs[depth : depth + 1]], inputs, strict=False)
            ]
        valid = torch.arange(T - 1, device=ids.device).unsqueeze(0) < (lengths - 1).unsqueeze(1)  # [B, T-1]
        hidden = [directions[0][:, :-1][valid]]
        targets = [ids[:, 1:][valid]]
        if flat is not None:
            reversed_ids = reorder(ids.unsqueeze(-1), flat).squeeze(-1)  # [B, T]: each text reversed in place
            hidden.append(directions[1][:, :-1][valid])
            targets.append(reversed_ids[:, 1:][valid])
        return torch.cat(hidden), torch.cat(targets)  # [N, H], [N]

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor, negatives: torch.Tensor, log_expected: torch.Tensor
    ) -> torch.Tensor:
        """The mean sampled-softmax loss of a batch: `negatives` [K] are the words drawn for this step and
        `log_expected` [V] the log of each word's expected count in K draws."""
        hidden, targets = self.states(ids, lengths)
        z = self.project(self.dropout(hidden))  # [N, E]
        rows = self.output(torch.cat([targets, negatives]))  # [N + K, E]: one lookup, so one set of rows prepared
        n = targets.size(0)
        true = (z * rows[:n]).sum(-1) + self.output_bias[targets] - log_expected[targets]  # [N]
        sampled = z @ rows[n:].T + (self.output_bias[negatives] - log_expected[negatives])  # [N, K]
        sampled = sampled.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), -math.inf)
        logits = torch.cat([true.unsqueeze(1), sampled], dim=1)
        loss: torch.Tensor = (torch.logsumexp(logits, dim=1) - true).mean()
        return loss

    @torch.no_grad()
    def log_likelihood(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[float, int]:
        """(summed log-probability, tokens predicted) of a batch under the full softmax."""
        hidden, targets = self.states(ids, lengths)
        z = self.project(hidden)
        weight = self.output(torch.arange(self.vocab_size, device=ids.device))  # [V, E], every row caught up
        total = 0.0
        for k in range(0, z.size(0), EVAL_ROWS):
            logits = z[k : k + EVAL_ROWS] @ weight.T + self.output_bias  # [rows, V]
            log_probs = torch.log_softmax(logits, dim=1)
            total += float(log_probs.gather(1, targets[k : k + EVAL_ROWS].unsqueeze(1)).sum())
        return total, int(targets.size(0))


def encoder_state(lm: LanguageModel) -> dict[str, torch.Tensor]:
    """What a classifier takes from a language model: its word table and its encoder, by the classifier's names."""
    return {k: v for k, v in lm.state_dict().items() if k == "embedding.weight" or k.startswith("encoder.")}
