"""The classifier in plain PyTorch: token ids + lengths -> logits. No loss, I/O or printing here.

    ids [B, T] -> Embedding [B, T, E] -> recurrent encoder [B, T, D*H] -> pooling [B, 2*D*H] -> dropout -> Linear

This is the reference implementation, and the one that runs on a GPU: nn.GRU (cuDNN there), nn.LSTM, and the
GRU of Cho et al. (2014) one step at a time. On the CPU, grutext.fast runs the same parameters through a
faster scan (see grutext.backend); tests/test_backend.py holds the two to float tolerance.

Batches are right-padded and never packed: on the CPU, packed sequences make the backward pass grow with T^2.
Padding cannot change a result because
  * the forward direction runs left to right, so real steps never see the padding that follows them;
  * the backward direction runs a second forward-running layer over each sequence reversed *within its own
    length* (padding stays at the end); its outputs are flipped back for the next layer, while the last
    layer's are pooled as they are (max, mean and the final state do not depend on the order of real steps);
  * pooling ignores padded positions through the mask.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from grutext.config import BIGRAM_HASH, DataShape, ModelConfig
from grutext.tokenizer import PAD_ID


class TorchLayer(nn.Module):
    """One direction of one layer of one of PyTorch's own recurrent modules (`rnn_class`), batch first."""

    rnn_class: type[nn.Module] = nn.GRU

    def __init__(self, input_size: int, hidden_size: int, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.rnn = self.rnn_class(input_size, hidden_size, num_layers=1, batch_first=True, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.rnn(x)[0]  # [B, T, H]
        return out


class GRULayer(TorchLayer):
    """PyTorch's GRU (`--cell gru`): the reset gate applied after the recurrent matmul, r ⊙ (W_hn h + b_hn),
    which is what cuDNN computes (and Cho et al.'s arXiv v1 variant)."""

    rnn_class = nn.GRU
    reset_after = True


class LSTMLayer(TorchLayer):
    """PyTorch's LSTM (`--cell lstm`), for comparison with the GRUs."""

    rnn_class = nn.LSTM


class Cho2014Cell(nn.Module):
    """The GRU as Cho et al. (2014) define it (`--cell cho2014`), parameters named and laid out as written:

        z_t = σ(W_z · [h_{t-1}, x_t] + b_z)                 update gate
        r_t = σ(W_r · [h_{t-1}, x_t] + b_r)                 reset gate
        h̃_t = tanh(W · [r_t ⊙ h_{t-1}, x_t] + b)            candidate state
        h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t               hidden state

    W_z, W_r and W are [hidden, hidden + input], columns h first, then x. Unlike PyTorch's GRU, the reset gate
    scales h *before* the recurrent matmul, and z weights the *new* state.
    """

    def __init__(self, input_size: int, hidden_size: int, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.W_z = nn.Parameter(torch.empty(hidden_size, hidden_size + input_size, device=device))
        self.W_r = nn.Parameter(torch.empty(hidden_size, hidden_size + input_size, device=device))
        self.W = nn.Parameter(torch.empty(hidden_size, hidden_size + input_size, device=device))
        self.b_z = nn.Parameter(torch.empty(hidden_size, device=device))
        self.b_r = nn.Parameter(torch.empty(hidden_size, device=device))
        self.b = nn.Parameter(torch.empty(hidden_size, device=device))
        bound = hidden_size**-0.5  # PyTorch's GRU initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        # x: [B, I], h: [B, H] -> [B, H]; one step, straight from the equations.
        hx = torch.cat([h, x], dim=1)  # [B, H+I]
        z = torch.sigmoid(hx @ self.W_z.T + self.b_z)
        r = torch.sigmoid(hx @ self.W_r.T + self.b_r)
        h_tilde = torch.tanh(torch.cat([r * h, x], dim=1) @ self.W.T + self.b)
        return (1 - z) * h + z * h_tilde


class Cho2014Layer(nn.Module):
    """One direction of one layer of the Cho et al. GRU over a batch [B, T, I] -> [B, T, H], step by step."""

    reset_after = False

    def __init__(self, input_size: int, hidden_size: int, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.cell = Cho2014Cell(input_size, hidden_size, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), self.cell.hidden_size)
        states = []
        for t in range(x.size(1)):
            h = self.cell(x[:, t], h)
            states.append(h)
        return torch.stack(states, dim=1)


LAYERS: dict[str, type[nn.Module]] = {"gru": GRULayer, "cho2014": Cho2014Layer, "lstm": LSTMLayer}

# (forward layer, backward layer or None, x [B, T, I], flat reversal index or None) -> one [B, T, H] per direction
LayerRunner = Callable[
    [nn.Module, nn.Module | None, torch.Tensor, torch.Tensor | None, torch.Tensor | None], list[torch.Tensor]
]


def run_layer(
    forward_layer: nn.Module,
    backward_layer: nn.Module | None,
    x: torch.Tensor,
    flat: torch.Tensor | None,
    lengths: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """One layer, both directions, by the layers' own forward (which computes the padding too: `lengths` unused)."""
    states = [forward_layer(x)]  # [B, T, H]
    if backward_layer is not None and flat is not None:
        states.append(backward_layer(reorder(x, flat)))  # time runs right to left
    return states


def reversal_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """idx[b, t] = len_b - 1 - t for real steps, t for padding: reverses each sequence in place, and is
    its own inverse."""
    t = torch.arange(max_len, device=lengths.device).unsqueeze(0)  # [1, T]
    rev = lengths.unsqueeze(1) - 1 - t  # [B, T]
    return torch.where(rev >= 0, rev, t)


def flat_index(index: torch.Tensor) -> torch.Tensor:
    """[B, T] per-sequence time positions -> [B*T] row numbers into a [B*T, D] view."""
    B, T = index.shape
    return (index + T * torch.arange(B, device=index.device).unsqueeze(1)).reshape(-1)


def reorder(x: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Reorder time steps per sequence: x [B, T, D] by flat_index rows. A row copy (index_select), measured
    18x faster than torch.gather with an index expanded over D."""
    B, T, D = x.shape
    return x.reshape(B * T, D).index_select(0, flat).view(B, T, D)


class Encoder(nn.Module):
    """Stacked, optionally bidirectional recurrent layers over right-padded batches. `runner` runs one layer's
    directions; the fast CPU backend replaces the reference `run_layer` with its scan."""

    def __init__(self, cfg: ModelConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.directions = 2 if cfg.bidirectional else 1
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        size = cfg.embedding_size
        for _ in range(cfg.layers):
            layer = LAYERS[cfg.cell]
            self.forward_layers.append(layer(size, cfg.hidden_size, device))
            if cfg.bidirectional:
                self.backward_layers.append(layer(size, cfg.hidden_size, device))
            size = cfg.hidden_size * self.directions
        self.dropout: nn.Module = nn.Dropout(cfg.dropout)
        self.output_size = size
        self.runner: LayerRunner = run_layer

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """x [B, T, E], lengths [B] (all >= 1) -> the last layer's states, one [B, T, H] per direction.

        The backward direction's states stay in its own (reversed, still right-padded) order: pooling over
        real steps is the same in either order, so the last layer is never flipped back."""
        flat = flat_index(reversal_index(lengths, x.size(1))) if self.directions == 2 else None
        states: list[torch.Tensor] = []
        for depth, forward_layer in enumerate(self.forward_layers):
            if depth > 0:
                back = [reorder(states[1], flat)] if flat is not None else []
                x = self.dropout(torch.cat([states[0], *back], dim=-1))
            backward_layer = self.backward_layers[depth] if flat is not None else None
            states = self.runner(forward_layer, backward_layer, x, flat, lengths)
        return states


def pool(states: list[torch.Tensor], lengths: torch.Tensor, mode: str) -> torch.Tensor:
    """One [B, T, H] per direction, each right-padded (the backward one in its own, reversed order) ->
    [B, sum of H] ([B, 2 * sum of H] for "maxmean": max, then mean, per direction), looking only at real steps."""
    B, T, _ = states[0].shape
    real = (torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)  # [B,T,1]
    # Float masks, not the boolean one: an op mixing a bool tensor into float ones takes torch's slow path on the
    # CPU (40 us against 8 for a [32, 10, 128] batch, forward and backward alike). Same values either way.
    dtype = states[0].dtype
    ones = real.to(dtype)  # 1 at real steps, 0 at padding
    minus_inf = torch.zeros_like(ones).masked_fill_(~real, float("-inf"))  # 0 at real steps, -inf at padding
    pooled = []
    for s in states:
        if mode in ("max", "maxmean"):
            pooled.append((s + minus_inf).amax(dim=1))
        if mode in ("mean", "maxmean"):
            pooled.append((s * ones).sum(dim=1) / lengths.unsqueeze(1).to(s.dtype))
        if mode == "last":  # the state after the last real step; for the backward direction, after the first word
            pooled.append(s[torch.arange(B, device=s.device), lengths - 1])
    return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=-1)


def classifier_features(cfg: ModelConfig, encoder_size: int) -> int:
    """Width of the pooled vector: the encoder's output (twice for "maxmean"), plus the skip path's."""
    per_vector = 2 if cfg.pooling == "maxmean" else 1
    return per_vector * (encoder_size + (cfg.embedding_size if cfg.embedding_skip else 0))


def skip_pooling(pooling: str) -> str:
    """The skip path pools embeddings like the encoder's states, except that "last" (one word) means "mean"."""
    return "mean" if pooling == "last" else pooling


class TextModel(nn.Module):
    """What every model grutext trains shares: a word table (`embedding`) read by a recurrent `encoder`, under
    settled settings (`cfg`); the classifier and the language model of grutext.lm both are. The backends run
    any of them (grutext.backend), and a language model's table and encoder load into a classifier as they are."""

    cfg: ModelConfig
    embedding: nn.Embedding
    encoder: Encoder

    def tables(self) -> list[nn.Embedding]:
        """The embedding tables a batch reads a few rows of (the fast backend updates those rows only)."""
        return [self.embedding]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class GRUClassifier(TextModel):
    """Embedding -> recurrent encoder -> pooling -> dropout -> linear. Returns logits."""

    def __init__(self, cfg: ModelConfig, shape: DataShape, device: torch.device | str | None = None) -> None:
        super().__init__()
        if not cfg.resolved:
            raise ValueError("build a model from resolved settings: ModelConfig.resolved_for(multi_label, tokenizer)")
        self.cfg, self.shape = cfg, shape
        self.frozen = False
        table = None
        if device is not None and torch.device(device).type == "meta":
            # the shape alone: torch's normal_ on the meta device imports torch._dynamo (1 s)
            table = torch.empty(shape.vocab_size, cfg.embedding_size, device=device)
        self.embedding = nn.Embedding(
            shape.vocab_size, cfg.embedding_size, padding_idx=PAD_ID, device=device, _weight=table
        )
        self.encoder = Encoder(cfg, device)
        self.dropout: nn.Module = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(classifier_features(cfg, self.encoder.output_size), shape.num_labels, device=device)
        if cfg.bigram_buckets:  # rows: the vocabulary's words, then the bigram buckets
            rows, dim = shape.vocab_size + cfg.bigram_buckets, cfg.bigram_dim
            bag = torch.empty(rows, dim, device=device)
            if bag.device.type != "meta":
                nn.init.uniform_(bag, -1.0 / dim, 1.0 / dim)  # fastText's start
            self.bigram_table = nn.Embedding(rows, dim, device=device, _weight=bag)
            self.bigram_classifier = nn.Linear(dim, shape.num_labels, device=device)

    def forward(
        self,
        ids: torch.Tensor,
        lengths: torch.Tensor,
        grams: torch.Tensor | None = None,
        gram_counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # ids: [B, T] right-padded with PAD_ID; lengths: [B], each >= 1; with character n-grams (cfg.char_span)
        # grams: [B, G] the distinct bigram-table rows of a text's n-grams (batching.pad_grams), right-padded;
        # gram_counts: [B, G] float, how often each occurs (0 in the padding)
        x = self.dropout(self.embedding(ids))  # [B, T, E]
        states = self.encoder(x, lengths)  # D x [B, T, H]
        pooled = pool(states, lengths, self.cfg.pooling)  # [B, D*H], twice that for maxmean
        if self.frozen:  # the word table and the encoder learn nothing from this batch (a pretrained start)
            pooled = pooled.detach()
        if self.cfg.embedding_skip:  # a bag-of-words path beside the encoder, pooled like RCNN (Lai et al. 2015)
            pooled = torch.cat([pooled, pool([x], lengths, skip_pooling(self.cfg.pooling))], dim=-1)
        logits: torch.Tensor = self.classifier(self.dropout(pooled))  # [B, C]
        if not self.cfg.bigram_buckets:
            return logits
        bag: torch.Tensor = self.bigram_classifier(self.bigram_bag(ids, lengths, grams, gram_counts))  # [B, C]
        if self.training:  # both heads side by side [B, 2C]: each is trained by its own loss (see `heads`)
            return torch.cat([logits, bag], dim=1)
        return (logits + bag) / 2

    @property
    def heads(self) -> int:
        """How many heads' logits a training forward returns side by side: 2 with the bigram head. Each head
        gets its own loss, so the bag learns as a fastText model would rather than leaning on the GRU (one
        head over both, tried first, lost validation accuracy); their logits are averaged at inference."""
        return 2 if self.cfg.bigram_buckets else 1

    def bigram_bag(
        self, ids: torch.Tensor, lengths: torch.Tensor, grams: torch.Tensor | None, gram_counts: torch.Tensor | None
    ) -> torch.Tensor:
        """The mean [B, D] of the table's rows for a text's tokens, its hashed word bigrams and, when given, its
        words' character n-grams: one lookup of the table (the fast backend prepares the rows of each). The
        n-grams come as distinct rows with counts, the same mean over a third of the rows on long texts."""
        position = torch.arange(ids.size(1), device=ids.device)
        buckets = self.bigram_table.num_embeddings - self.shape.vocab_size
        pairs = bigram_ids(ids, self.shape.vocab_size, buckets)  # [B, T-1]
        dtype = self.bigram_table.weight.dtype
        parts = [ids, pairs]
        weight = [(position[None, :] < lengths[:, None]).to(dtype), (position[None, 1:] < lengths[:, None]).to(dtype)]
        if self.cfg.char_span is not None:
            if grams is None or gram_counts is None:
                raise ValueError("this model reads character n-grams: pass grams and gram_counts")
            parts.append(grams)
            weight.append(gram_counts.to(dtype))
        w = torch.cat(weight, dim=1).unsqueeze(-1)  # [B, 2T-1 (+G), 1]: 1 or the count, 0 in the padding
        rows: torch.Tensor = self.bigram_table(torch.cat(parts, dim=1))  # [B, 2T-1 (+G), D]
        return (rows * w).sum(dim=1) / w.sum(dim=1)

    def tables(self) -> list[nn.Embedding]:
        return [self.embedding, *([self.bigram_table] if self.cfg.bigram_buckets else [])]


def bigram_ids(ids: torch.Tensor, vocab_size: int, buckets: int) -> torch.Tensor:
    """Rows [B, T-1] of the bigram table for each pair of neighbouring token ids (after the vocabulary's rows)."""
    return (ids[:, :-1] * BIGRAM_HASH + ids[:, 1:]) % buckets + vocab_size


def parameter_shapes(cfg: ModelConfig, shape: DataShape) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes a config implies, from the model itself built on the meta device (nothing is
    allocated), so a checkpoint's weights can be checked against its config.json before any is read."""
    model = GRUClassifier(cfg, shape, device="meta")
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
