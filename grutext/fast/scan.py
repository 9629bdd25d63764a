"""Fast GRU recurrences for the CPU: hand-written backward passes, two sequences at a time on two cores.
Part of grutext.fast (the CPU backend); grutext.model holds the reference it is tested against.

Why: on a 2-core CPU a GRU step is a [B, H] x [H, 3H] matmul, too small for two intra-op threads to help
(measured: 1 -> 2 threads gave nothing), while torch's autograd records a dozen nodes per step. Here

  * the input half of every gate is one large matmul over all steps, before the loop;
  * each step is one matmul (reset-after form) or two (Cho et al.'s reset-before form) plus pointwise ops;
  * backward walks time once by hand, then forms weight gradients with one large matmul;
  * the loops are TorchScript, which releases the GIL, so `torch.jit.fork` runs two scans truly in
    parallel: the two directions of a bidirectional layer, or the two halves of a batch.

Both forms use one weight layout, [3H, I] input weights and [3H, H] recurrent weights with biases:
  * reset-after (PyTorch / cuDNN, `--cell gru`), rows (r, z, n), exactly nn.GRU's parameters:
        r, z = σ(W_ir x + b_ir + W_hr h + b_hr), σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));   h' = (1 − z) ⊙ n + z ⊙ h
  * reset-before (Cho et al. 2014, `--cell cho2014`), rows (z, r, n), the h- and x-columns of W_z, W_r and W; b_hh = 0:
        z, r = σ(W_z·[h, x] + b_z), σ(W_r·[h, x] + b_r)
        h̃ = tanh(W·[r ⊙ h, x] + b);                      h' = (1 − z) ⊙ h + z ⊙ h̃
"""

from __future__ import annotations

import warnings
from typing import Any

import torch


def _scan_forward(
    x: torch.Tensor, W_ih: torch.Tensor, b_ih: torch.Tensor, W_hh: torch.Tensor, b_hh: torch.Tensor, reset_after: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [B, T, I] -> outputs [T, B, H], gates [T, B, 3H] and (reset-after) W_hn h + b_hn [T, B, H].

    Buffers are time-major, so each step works on contiguous slices in place. The gates buffer first holds
    every gate's input half (one large matmul); each step adds the recurrent half onto it in place
    (addmm_: no copy, no separate add) and applies the nonlinearity there. Every slice a step uses is cut
    before the loop (unbind: one op for all steps), so a step runs its four to six arithmetic ops and no
    indexing ops, each of which costs as much dispatch as a small arithmetic op."""
    B, T, In = x.shape
    H = W_hh.shape[1]
    if reset_after:  # b_hh's r and z parts join the input bias; its n part stays inside r ⊙ (W_hn h + b_hn)
        b_ih = torch.cat([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :]])
    gates = torch.addmm(b_ih, x.transpose(0, 1).reshape(T * B, In), W_ih.t()).view(T, B, 3 * H)
    out = x.new_empty([T, B, H])
    h = x.new_zeros([B, H])
    out_s = out.unbind(0)
    g_gates, g_n = gates[:, :, : 2 * H].unbind(0), gates[:, :, 2 * H :].unbind(0)
    first, second = gates[:, :, :H].unbind(0), gates[:, :, H : 2 * H].unbind(0)  # (r, z) or (z, r)
    W_gatesT = W_hh[: 2 * H].t()
    W_nT = W_hh[2 * H :].t()
    if reset_after:
        hh_n = b_hh[2 * H :].expand(T, B, H).contiguous()  # W_hn h + b_hn, its bias filled in for every step
        hh_s = hh_n.unbind(0)
        for t in range(T):
            g_gates[t].addmm_(h, W_gatesT).sigmoid_()  # r, z
            hh_s[t].addmm_(h, W_nT)
            n = g_n[t].addcmul_(first[t], hh_s[t]).tanh_()
            h = torch.lerp(n, h, second[t], out=out_s[t])  # n + z * (h - n)
    else:
        hh_n = x.new_empty([0])
        for t in range(T):
            g_gates[t].addmm_(h, W_gatesT).sigmoid_()  # z, r
            n = g_n[t].addmm_(second[t] * h, W_nT).tanh_()
            h = torch.lerp(h, n, first[t], out=out_s[t])  # h + z * (n - h)
    return out, gates, hh_n


def _scan_backward(
    d_out: torch.Tensor,
    x: torch.Tensor,
    out: torch.Tensor,
    gates: torch.Tensor,
    hh_n: torch.Tensor,
    W_ih: torch.Tensor,
    W_hh: torch.Tensor,
    reset_after: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (d_x, d_W_ih, d_b_ih, d_W_hh, d_b_hh) of one scan, walking time backwards once.
    d_out is [B, T, H]; out, gates and hh_n are time-major as _scan_forward returns them.

    Every factor that does not depend on the incoming gradient (gate derivatives, h_prev - n, ...) is
    computed for all steps at once before the loop, so each step is three or seven small ops, not twenty:
    at sentence lengths the per-op overhead, not arithmetic, is what a step costs."""
    B, T, In = x.shape
    H = W_hh.shape[1]
    d_out_t = d_out.transpose(0, 1)  # [T, B, H] view
    h_prev = torch.cat([x.new_zeros([1, B, H]), out[:-1]], dim=0)  # [T, B, H]
    flat_prev = h_prev.reshape(T * B, H)
    G = torch.empty_like(out)  # G[t]: the whole gradient reaching h_t
    G[T - 1] = d_out_t[T - 1]
    G_s, d_out_s = G.unbind(0), d_out_t.unbind(0)  # per-step views, cut once (see _scan_forward)
    d_xp = torch.empty_like(gates)  # gradient of the input projections, [T, B, 3H]
    flat_d = d_xp.view(T * B, 3 * H)  # the same storage, filled in below
    n = gates[:, :, 2 * H :]
    if reset_after:
        r = gates[:, :, :H]
        z = gates[:, :, H : 2 * H]
        cn = (1 - z) * (1 - n * n)  # d n_pre / d h_t
        # d(W_hh h + b_hh) = G * K, per gate (r, z, n)
        K = torch.cat([cn * hh_n * r * (1 - r), (h_prev - n) * z * (1 - z), cn * r], dim=2)
        d_hh_all = torch.empty_like(gates)
        K3_s, d_hh3_s, d_hh_s = K.view(T, B, 3, H).unbind(0), d_hh_all.view(T, B, 3, H).unbind(0), d_hh_all.unbind(0)
        G_wide, z_s = G.unsqueeze(2).unbind(0), z.unbind(0)  # G_wide[t]: G[t] as [B, 1, H]
        for t in range(T - 1, -1, -1):
            torch.mul(G_wide[t], K3_s[t], out=d_hh3_s[t])
            if t > 0:
                torch.addmm(torch.addcmul(d_out_s[t - 1], G_s[t], z_s[t]), d_hh_s[t], W_hh, out=G_s[t - 1])
        d_xp[:, :, : 2 * H] = d_hh_all[:, :, : 2 * H]
        torch.mul(G, cn, out=d_xp[:, :, 2 * H :])
        flat_dhh = d_hh_all.reshape(T * B, 3 * H)
        d_W_hh = flat_dhh.t().mm(flat_prev)
        d_b_hh = flat_dhh.sum(0)
    else:
        z = gates[:, :, :H]
        r = gates[:, :, H : 2 * H]
        cz = (n - h_prev) * z * (1 - z)
        cn = z * (1 - n * n)
        cr = h_prev * r * (1 - r)
        one_minus_z = 1 - z
        W_zr = W_hh[: 2 * H]
        W_n = W_hh[2 * H :]
        cn_s, cz_s, cr_s, one_minus_z_s, r_s = (
            cn.unbind(0),
            cz.unbind(0),
            cr.unbind(0),
            one_minus_z.unbind(0),
            r.unbind(0),
        )
        d_z_s, d_r_s, d_n_s = d_xp[:, :, :H].unbind(0), d_xp[:, :, H : 2 * H].unbind(0), d_xp[:, :, 2 * H :].unbind(0)
        d_zr_s = d_xp[:, :, : 2 * H].unbind(0)
        for t in range(T - 1, -1, -1):
            g = G_s[t]
            d_n = torch.mul(g, cn_s[t], out=d_n_s[t])
            torch.mul(g, cz_s[t], out=d_z_s[t])
            d_rh = torch.mm(d_n, W_n)
            torch.mul(d_rh, cr_s[t], out=d_r_s[t])
            if t > 0:
                carry = torch.addcmul(torch.addcmul(d_out_s[t - 1], g, one_minus_z_s[t]), d_rh, r_s[t])
                torch.addmm(carry, d_zr_s[t], W_zr, out=G_s[t - 1])
        r_h = r.reshape(T * B, H) * flat_prev
        d_W_hh = torch.cat([flat_d[:, : 2 * H].t().mm(flat_prev), flat_d[:, 2 * H :].t().mm(r_h)], dim=0)
        d_b_hh = x.new_zeros([3 * H])
    flat_x = x.transpose(0, 1).reshape(T * B, In)
    d_x = flat_d.mm(W_ih).view(T, B, In).transpose(0, 1)
    return d_x, flat_d.t().mm(flat_x), flat_d.sum(0), d_W_hh, d_b_hh


def _pair_forward(
    xa: torch.Tensor,
    Wa_ih: torch.Tensor,
    ba_ih: torch.Tensor,
    Wa_hh: torch.Tensor,
    ba_hh: torch.Tensor,
    xb: torch.Tensor,
    Wb_ih: torch.Tensor,
    bb_ih: torch.Tensor,
    Wb_hh: torch.Tensor,
    bb_hh: torch.Tensor,
    reset_after: bool,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    future = torch.jit.fork(_scan_forward, xb, Wb_ih, bb_ih, Wb_hh, bb_hh, reset_after)  # type: ignore[no-untyped-call]
    a = _scan_forward(xa, Wa_ih, ba_ih, Wa_hh, ba_hh, reset_after)
    return a, torch.jit.wait(future)  # type: ignore[no-untyped-call]


def _pair_backward(
    da: torch.Tensor,
    xa: torch.Tensor,
    outa: torch.Tensor,
    gatesa: torch.Tensor,
    hna: torch.Tensor,
    Wa_ih: torch.Tensor,
    Wa_hh: torch.Tensor,
    db: torch.Tensor,
    xb: torch.Tensor,
    outb: torch.Tensor,
    gatesb: torch.Tensor,
    hnb: torch.Tensor,
    Wb_ih: torch.Tensor,
    Wb_hh: torch.Tensor,
    reset_after: bool,
) -> tuple[
    tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
]:
    future = torch.jit.fork(_scan_backward, db, xb, outb, gatesb, hnb, Wb_ih, Wb_hh, reset_after)  # type: ignore[no-untyped-call]
    a = _scan_backward(da, xa, outa, gatesa, hna, Wa_ih, Wa_hh, reset_after)
    return a, torch.jit.wait(future)  # type: ignore[no-untyped-call]


def _script(fn: Any) -> Any:
    """TorchScript `fn`: deprecated in torch 2.x, yet the only way to run a Python-level loop without the GIL,
    so that torch.jit.fork runs two scans truly in parallel. grutext.fast.unavailable() turns a failure here
    into one warning and the reference backend."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(fn)


pair_forward = _script(_pair_forward)
pair_backward = _script(_pair_backward)


class PairScan(torch.autograd.Function):
    """Two independent GRU scans (a, b) computed in parallel; gradients flow to both sets of weights.

    Inputs: reset_after, then for a and for b: x [B, T, I], W_ih [3H, I], b_ih [3H], W_hh [3H, H], b_hh [3H].
    Outputs: out_a [Ba, T, H], out_b [Bb, T, H]. Sequences are right-padded; a state at a real step never
    depends on later (padding) steps."""

    @staticmethod
    def forward(ctx: Any, reset_after: bool, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, Wa_ih, ba_ih, Wa_hh, ba_hh, xb, Wb_ih, bb_ih, Wb_hh, bb_hh = args
        a, b = pair_forward(xa, Wa_ih, ba_ih, Wa_hh, ba_hh, xb, Wb_ih, bb_ih, Wb_hh, bb_hh, reset_after)
        ctx.reset_after = reset_after
        ctx.save_for_backward(xa, a[0], a[1], a[2], Wa_ih, Wa_hh, xb, b[0], b[1], b[2], Wb_ih, Wb_hh)
        return a[0].transpose(0, 1), b[0].transpose(0, 1)  # [B, T, H] views of the time-major outputs

    @staticmethod
    def backward(ctx: Any, d_a: torch.Tensor, d_b: torch.Tensor) -> tuple[Any, ...]:
        xa, outa, ga, hna, Wa_ih, Wa_hh, xb, outb, gb, hnb, Wb_ih, Wb_hh = ctx.saved_tensors
        a, b = pair_backward(
            d_a, xa, outa, ga, hna, Wa_ih, Wa_hh,
            d_b, xb, outb, gb, hnb, Wb_ih, Wb_hh, ctx.reset_after,
        )  # fmt: skip
        return (None, *a, *b)


def pair_scan(
    reset_after: bool,
    a: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    b: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run two scans, each given as (x, W_ih, b_ih, W_hh, b_hh); see PairScan."""
    out: tuple[torch.Tensor, torch.Tensor] = PairScan.apply(reset_after, *a, *b)  # type: ignore[no-untyped-call]
    return out
