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


class TorchLSTMLayer(nn.Module):
    """One direction of one layer of torch's LSTM, for comparison with the GRUs (`--cell lstm`)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers=1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.rnn(x)[0]  # [B, T, H]
        return out


class SeedGRUCell(nn.Module):
    """The GRU of our seed document (Cho et al. 2014), parameters named and laid out as written there:

        z_t = σ(W_z · [h_{t-1}, x_t] + b_z)
        r_t = σ(W_r · [h_{t-1}, x_t] + b_r)
        h̃_t = tanh(W · [r_t ⊙ h_{t-1}, x_t] + b)
        h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

    W_z, W_r and W are [hidden, hidden + input], columns in the seed's order: h first, then x. Unlike torch's
    GRU, the reset gate scales h *before* the recurrent matmul, and z weights the *new* state.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.W_z = nn.Parameter(torch.empty(hidden_size, hidden_size + input_size))
        self.W_r = nn.Parameter(torch.empty(hidden_size, hidden_size + input_size))
        self.W = nn.Parameter(torch.empty(hidden_size, hidden_size + input_size))
        self.b_z = nn.Parameter(torch.empty(hidden_size))
        self.b_r = nn.Parameter(torch.empty(hidden_size))
        self.b = nn.Parameter(torch.empty(hidden_size))
        bound = hidden_size**-0.5  # torch's GRU initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        # x: [B, I], h: [B, H] -> [B, H]; one step, straight from the equations.
        hx = torch.cat([h, x], dim=1)  # [B, H+I]
        z = torch.sigmoid(hx @ self.W_z.T + self.b_z)
        r = torch.sigmoid(hx @ self.W_r.T + self.b_r)
        h_tilde = torch.tanh(torch.cat([r * h, x], dim=1) @ self.W.T + self.b)
        return (1 - z) * h + z * h_tilde

    def split_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The same weights regrouped for a fast sequence loop:
        W_x [3H, I] and b_x [3H] (input parts of z, r and the candidate, applied to all steps at once),
        W_zr_h [2H, H] (recurrent parts of z and r, one fused matmul per step), W_h [H, H]."""
        H = self.hidden_size
        W_x = torch.cat([self.W_z[:, H:], self.W_r[:, H:], self.W[:, H:]])
        b_x = torch.cat([self.b_z, self.b_r, self.b])
        W_zr_h = torch.cat([self.W_z[:, :H], self.W_r[:, :H]])
        return W_x, b_x, W_zr_h, self.W[:, :H]


class _SeedGRUScan(torch.autograd.Function):
    """The seed recurrence over time with a hand-written backward pass.

    Autograd through a Python loop records ~15 nodes per step; here forward keeps only the gates, and
    backward walks time once with two small matmuls per step, then forms the weight gradients with one
    large matmul over all steps."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        xp: torch.Tensor,  # [B, T, 3H]: input projections of z, r and the candidate, biases included
        W_zr_h: torch.Tensor,  # [2H, H]
        W_h: torch.Tensor,  # [H, H]
        h0: torch.Tensor,  # [B, H]
    ) -> torch.Tensor:
        B, T, H3 = xp.shape
        H = H3 // 3
        out = xp.new_empty(B, T, H)
        gates = xp.new_empty(B, T, H3)  # z, r, candidate per step, for backward
        h = h0
        W_zr_hT, W_hT = W_zr_h.T, W_h.T
        for t in range(T):
            zr = torch.sigmoid(torch.addmm(xp[:, t, : 2 * H], h, W_zr_hT))  # [B, 2H]
            z, r = zr[:, :H], zr[:, H:]
            n = torch.tanh(torch.addmm(xp[:, t, 2 * H :], r * h, W_hT))  # [B, H]
            h = torch.addcmul(h, z, n - h)  # (1 - z) h + z n
            out[:, t] = h
            gates[:, t, : 2 * H] = zr
            gates[:, t, 2 * H :] = n
        ctx.save_for_backward(out, gates, W_zr_h, W_h, h0)
        return out

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, d_out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        out, gates, W_zr_h, W_h, h0 = ctx.saved_tensors  # type: ignore[attr-defined]
        T, H = out.shape[1:]
        h_prev = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)  # [B, T, H]
        d_pre = torch.empty_like(gates)  # gradients of the pre-activations of z, r and the candidate
        dh = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            dh = dh + d_out[:, t]
            h = h_prev[:, t]
            z, r, n = gates[:, t, :H], gates[:, t, H : 2 * H], gates[:, t, 2 * H :]
            dn_pre = dh * z * (1 - n * n)
            dz_pre = dh * (n - h) * z * (1 - z)
            d_rh = dn_pre @ W_h  # [B, H]
            dr_pre = d_rh * h * r * (1 - r)
            d_pre[:, t, :H] = dz_pre
            d_pre[:, t, H : 2 * H] = dr_pre
            d_pre[:, t, 2 * H :] = dn_pre
            dh = dh * (1 - z) + d_rh * r + d_pre[:, t, : 2 * H] @ W_zr_h
        flat_prev = h_prev.reshape(-1, H)
        d_W_zr_h = d_pre[:, :, : 2 * H].reshape(-1, 2 * H).T @ flat_prev
        d_W_h = d_pre[:, :, 2 * H :].reshape(-1, H).T @ (gates[:, :, H : 2 * H].reshape(-1, H) * flat_prev)
        return d_pre, d_W_zr_h, d_W_h, dh


class SeedGRULayer(nn.Module):
    """One direction of one layer of the seed GRU over a right-padded batch [B, T, I] -> [B, T, H].

    The input half of every gate is projected for all steps in one matmul before the loop; each step then
    needs one fused matmul for z and r and one for the candidate."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = SeedGRUCell(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        W_x, b_x, W_zr_h, W_h = self.cell.split_weights()
        xp = nn.functional.linear(x, W_x, b_x)  # [B, T, 3H]
        h0 = x.new_zeros(x.size(0), self.cell.hidden_size)
        out: torch.Tensor = _SeedGRUScan.apply(xp, W_zr_h, W_h, h0)  # type: ignore[no-untyped-call]
        return out


LAYERS: dict[str, type[nn.Module]] = {"torch": TorchGRULayer, "seed": SeedGRULayer, "lstm": TorchLSTMLayer}


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
            layer = LAYERS[cfg.cell]
            self.forward_layers.append(layer(size, cfg.hidden_size))
            if cfg.bidirectional:
                self.backward_layers.append(layer(size, cfg.hidden_size))
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
