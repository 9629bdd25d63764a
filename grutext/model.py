"""The classifier: token ids + lengths -> logits. No loss, I/O or printing here.

    ids [B, T] -> Embedding [B, T, E] -> GRU encoder [B, T, D*H] -> pooling [B, D*H] -> dropout -> Linear [B, C]

Batches are right-padded and never packed: on CPU, packed sequences make the backward pass grow with T^2.
Padding cannot change a result because
  * the forward direction runs left to right, so real steps never see the padding that follows them;
  * the backward direction runs a second forward-running layer over each sequence reversed *within its own
    length* (padding stays at the end), and its outputs are flipped back the same way;
  * pooling ignores padded positions through the mask.
"""

from __future__ import annotations

import torch
from torch import nn

from grutext.config import ModelConfig
from grutext.tokenizer import PAD_ID


class TorchGRULayer(nn.Module):
    """One direction of one layer: torch's fused GRU (cuDNN form: reset gate applied after the matmul)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(input_size, hidden_size, num_layers=1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.rnn(x)[0]  # [B, T, H]
        return out


def reversal_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """idx[b, t] = len_b - 1 - t for real steps, t for padding: reverses each sequence in place, and is
    its own inverse."""
    t = torch.arange(max_len, device=lengths.device).unsqueeze(0)  # [1, T]
    rev = lengths.unsqueeze(1) - 1 - t  # [B, T]
    return torch.where(rev >= 0, rev, t)


class GRUEncoder(nn.Module):
    """Stacked, optionally bidirectional GRU over right-padded batches."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.directions = 2 if cfg.bidirectional else 1
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        size = cfg.embed_dim
        for _ in range(cfg.layers):
            self.forward_layers.append(TorchGRULayer(size, cfg.hidden_size))
            if cfg.bidirectional:
                self.backward_layers.append(TorchGRULayer(size, cfg.hidden_size))
            size = cfg.hidden_size * self.directions
        self.dropout = nn.Dropout(cfg.dropout)
        self.output_size = size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # x: [B, T, E], lengths: [B] (all >= 1) -> [B, T, D*H]
        index = None
        if self.directions == 2:
            index = reversal_index(lengths, x.size(1)).unsqueeze(-1)  # [B, T, 1]
        for depth, forward_layer in enumerate(self.forward_layers):
            if depth > 0:
                x = self.dropout(x)
            out = forward_layer(x)  # [B, T, H]
            if index is not None:
                x_rev = x.gather(1, index.expand(-1, -1, x.size(2)))
                out_rev = self.backward_layers[depth](x_rev)  # [B, T, H], time runs right to left
                out = torch.cat([out, out_rev.gather(1, index.expand(-1, -1, out_rev.size(2)))], dim=-1)
            x = out
        return x


def pool(states: torch.Tensor, lengths: torch.Tensor, mode: str, directions: int) -> torch.Tensor:
    """[B, T, D*H] -> [B, D*H], looking only at real steps."""
    B, T, _ = states.shape
    mask = (torch.arange(T, device=states.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)  # [B,T,1]
    if mode == "max":
        return states.masked_fill(~mask, float("-inf")).amax(dim=1)
    if mode == "mean":
        return (states * mask).sum(dim=1) / lengths.unsqueeze(1).to(states.dtype)
    # "last": the forward direction's state after the last real token; the backward direction's after the first.
    hidden = states.size(2) // directions
    last = states[torch.arange(B, device=states.device), lengths - 1]  # [B, D*H]
    if directions == 1:
        return last
    return torch.cat([last[:, :hidden], states[:, 0, hidden:]], dim=-1)


class GRUClassifier(nn.Module):
    """Embedding -> GRU encoder -> pooling -> dropout -> linear. Returns logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.encoder = GRUEncoder(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(self.encoder.output_size, cfg.num_labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # ids: [B, T] right-padded with PAD_ID; lengths: [B], each >= 1
        x = self.dropout(self.embedding(ids))  # [B, T, E]
        states = self.encoder(x, lengths)  # [B, T, D*H]
        pooled = pool(states, lengths, self.cfg.pooling, self.encoder.directions)  # [B, D*H]
        logits: torch.Tensor = self.classifier(self.dropout(pooled))  # [B, C]
        return logits

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
