"""The GRU of Cho et al. (2014), exactly: the cell against the four equations, the fast scan against the
cell, gradients, and PyTorch's GRU against our own reading of its (reset-after) layout."""

from __future__ import annotations

import pytest
import torch

from grutext.fast import scan_layer, scan_weights
from grutext.fast.scan import PairScan, pair_scan
from grutext.model import Cho2014Cell, Cho2014Layer, GRULayer
from tests.conftest import settled

IN, H, B = 5, 4, 3


def sigma(v: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-v))


def cho_cell() -> Cho2014Cell:
    torch.manual_seed(0)
    return Cho2014Cell(IN, H).double()


def test_parameters_are_named_and_shaped_as_in_the_paper() -> None:
    shapes = {name: tuple(p.shape) for name, p in cho_cell().named_parameters()}
    assert shapes == {"W_z": (H, H + IN), "W_r": (H, H + IN), "W": (H, H + IN), "b_z": (H,), "b_r": (H,), "b": (H,)}


def test_one_step_equals_the_four_equations_by_hand() -> None:
    cell = cho_cell()
    x, h = torch.randn(B, IN, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    expected = torch.empty(B, H, dtype=torch.float64)
    for b in range(B):  # one example at a time, one output unit at a time
        hx = [*h[b].tolist(), *x[b].tolist()]  # [h_{t-1}, x_t]: h first, then x
        z = [sigma(sum(cell.W_z[j, k] * hx[k] for k in range(H + IN)) + cell.b_z[j]) for j in range(H)]
        r = [sigma(sum(cell.W_r[j, k] * hx[k] for k in range(H + IN)) + cell.b_r[j]) for j in range(H)]
        rhx = [r[k] * h[b, k] for k in range(H)] + x[b].tolist()  # [r_t ⊙ h_{t-1}, x_t]
        cand = [torch.tanh(sum(cell.W[j, k] * rhx[k] for k in range(H + IN)) + cell.b[j]) for j in range(H)]
        for j in range(H):
            expected[b, j] = (1 - z[j]) * h[b, j] + z[j] * cand[j]
    with torch.no_grad():
        torch.testing.assert_close(cell(x, h), expected, rtol=1e-12, atol=1e-12)


def reset_after_step(cell: Cho2014Cell, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """torch/cuDNN's form with the same weights: r applied after the recurrent matmul, z weights the old state."""
    hx = torch.cat([h, x], 1)
    z = sigma(hx @ cell.W_z.T + cell.b_z)
    r = sigma(hx @ cell.W_r.T + cell.b_r)
    n = torch.tanh(x @ cell.W[:, H:].T + r * (h @ cell.W[:, :H].T) + cell.b)
    return (1 - z) * n + z * h


def test_the_reset_after_form_is_a_different_function() -> None:
    cell = cho_cell()
    x, h = torch.randn(B, IN, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    with torch.no_grad():
        assert (cell(x, h) - reset_after_step(cell, x, h)).abs().max() > 1e-3


def test_layer_and_fast_scan_equal_stepping_the_cell() -> None:
    layer = Cho2014Layer(IN, H).double()
    x = torch.randn(B, 7, IN, dtype=torch.float64)
    h = torch.zeros(B, H, dtype=torch.float64)
    steps = []
    with torch.no_grad():
        for t in range(7):
            h = layer.cell(x[:, t], h)
            steps.append(h)
        torch.testing.assert_close(layer(x), torch.stack(steps, 1), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(scan_layer(layer, None, x, None)[0], torch.stack(steps, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gradcheck_of_the_hand_written_backward(reset_after: bool) -> None:
    """Both forms of grutext's scan, two sequences of different batch sizes at once."""
    torch.manual_seed(1)

    def scan_args(batch: int) -> tuple[torch.Tensor, ...]:
        return (
            torch.randn(batch, 5, IN, dtype=torch.float64, requires_grad=True),
            torch.randn(3 * H, IN, dtype=torch.float64, requires_grad=True),
            torch.randn(3 * H, dtype=torch.float64, requires_grad=True),
            torch.randn(3 * H, H, dtype=torch.float64, requires_grad=True),
            torch.randn(3 * H, dtype=torch.float64, requires_grad=reset_after),
        )

    args = (*scan_args(2), *scan_args(3))
    assert torch.autograd.gradcheck(lambda *a: PairScan.apply(reset_after, *a), args)


def test_scan_equals_torch_gru_forward_and_backward() -> None:
    """On the CPU the encoder runs nn.GRU's weights through grutext's scan: same outputs, same gradients."""
    torch.manual_seed(3)
    layer = GRULayer(IN, H).double()
    x = torch.randn(B, 6, IN, dtype=torch.float64, requires_grad=True)
    reference = layer(x)
    (reference * torch.arange(6.0, dtype=torch.float64).view(1, 6, 1)).sum().backward()
    expected = [x.grad.clone(), *(p.grad.clone() for p in layer.parameters())]  # type: ignore[union-attr]
    layer.zero_grad()
    x.grad = None
    w = scan_weights(layer)
    out = pair_scan(True, (x[:1], *w), (x[1:], *w))
    ours = torch.cat(out)
    (ours * torch.arange(6.0, dtype=torch.float64).view(1, 6, 1)).sum().backward()
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    got = [x.grad, *(p.grad for p in layer.parameters())]
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


class _Scanned(torch.nn.Module):
    """A layer run by the fast scan instead of its own forward."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scan_layer(self.layer, None, x, None)[0]


def test_gradcheck_of_the_whole_layer_through_the_papers_parameters() -> None:
    """Gradients reach W_z, W_r, W, b_z, b_r, b and the input through the regrouped fast path."""
    layer = _Scanned(Cho2014Layer(IN, H).double())
    names = [name for name, _ in layer.named_parameters()]
    x = torch.randn(B, 4, IN, dtype=torch.float64, requires_grad=True)
    weights = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())

    def run(x: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.func.functional_call(layer, dict(zip(names, weights, strict=True)), (x,))
        return out

    assert torch.autograd.gradcheck(run, (x, *weights))


def test_own_reset_after_loop_equals_torch_gru() -> None:
    """Reading nn.GRU's weights as [W_ir|W_iz|W_in] and [W_hr|W_hz|W_hn] and running the reset-after
    equations by hand reproduces nn.GRU: this pins down torch's gate order and layout."""
    torch.manual_seed(2)
    layer = GRULayer(IN, H).double()
    rnn = layer.rnn
    x = torch.randn(B, 6, IN, dtype=torch.float64)
    W_ir, W_iz, W_in = rnn.weight_ih_l0.chunk(3)
    W_hr, W_hz, W_hn = rnn.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = rnn.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = rnn.bias_hh_l0.chunk(3)
    h = torch.zeros(B, H, dtype=torch.float64)
    outs = []
    with torch.no_grad():
        for t in range(6):
            xt = x[:, t]
            r = sigma(xt @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
            z = sigma(xt @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
            n = torch.tanh(xt @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
            h = (1 - z) * n + z * h
            outs.append(h)
        torch.testing.assert_close(layer(x), torch.stack(outs, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["cho2014", "lstm"])
def test_other_cells_train_a_step(cell: str) -> None:
    from grutext.config import DataShape, ModelConfig
    from grutext.model import GRUClassifier

    torch.manual_seed(0)
    cfg = settled(ModelConfig(embed_dim=6, hidden_size=5, cell=cell, dropout=0.0, bigram_buckets=0))
    model = GRUClassifier(cfg, DataShape(20, 2)).double()
    ids, lengths, target = torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2]), torch.tensor([0, 1])

    def loss() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(ids, lengths), target)

    before = loss()
    before.backward()
    for name, p in model.encoder.named_parameters():  # every recurrent weight learns, finitely
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    with torch.no_grad():  # the gradient is a descent direction: a small step against it lowers the loss
        for p in model.parameters():
            p -= 1e-3 * p.grad
    after = loss()
    assert after < before - 1e-4 * sum(float((p.grad**2).sum()) for p in model.parameters())
