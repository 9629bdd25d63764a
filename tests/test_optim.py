"""LazyAdamW against torch's AdamW: the same weights and moments, step for step, however rarely a row is touched."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from grutext.fast import native, optim
from grutext.fast.optim import FusedAdamW, LazyAdamW, Schedule, TrainingOptimizer


@pytest.fixture(autouse=True, params=["native kernel", "tensor ops"])
def row_work(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on both of LazyAdamW's paths: the native kernel's three calls, and the tensor ops that run
    where no compiler built it."""
    if request.param == "tensor ops":
        monkeypatch.setattr(optim, "native_rows", lambda: None)
    elif native.kernel() is None:
        pytest.skip("the native kernel is not built here")
    return str(request.param)


def test_the_native_path_is_taken_where_built(row_work: str) -> None:
    rows = LazyAdamW(nn.Parameter(torch.zeros(3, 2)))
    assert (rows.native is not None) == (row_work == "native kernel")


def _run(
    window: int, steps: int = 300, weight_decay: float = 0.01, scale: float = 0.1
) -> tuple[nn.Parameter, nn.Parameter, LazyAdamW]:
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(40, 6, generator=gen)
    dense, lazy = nn.Parameter(init.clone()), nn.Parameter(init.clone())
    reference = torch.optim.AdamW([dense], lr=1e-2, weight_decay=weight_decay)
    rows = LazyAdamW(lazy, weight_decay=weight_decay, window=window)
    often = torch.linspace(0.9, 0.005, 40)  # row 0 in most steps, row 39 a handful of times
    for step in range(steps):
        lr = 1e-2 * min(1.0, (step + 1) / 30) * (1 - step / steps)  # warmup, then linear decay
        reference.param_groups[0]["lr"] = lr
        touched = (torch.rand(40, generator=gen) < often).nonzero().squeeze(1)
        if step % 50 == 7:
            touched = touched[:0]  # a step with no row at all
        values = torch.randn(len(touched), 6, generator=gen) * scale
        dense.grad = torch.zeros(40, 6).index_add_(0, touched, values)
        lazy.grad = torch.sparse_coo_tensor(touched.unsqueeze(0), values, (40, 6), check_invariants=True)
        reference.step()
        rows.prepare(touched)
        rows.step(lr)
    return dense, lazy, rows


@pytest.mark.parametrize("window", [1, 7, 128])
def test_matches_torch_adamw_after_flush(window: int) -> None:
    dense, lazy, rows = _run(window)
    rows.flush()
    torch.testing.assert_close(lazy.data, dense.data, rtol=1e-5, atol=1e-6)
    state = rows.state()
    assert int(state["step"]) == 300
    # The untouched-in-between rows must really have moved: weight decay and momentum act every step.
    assert not torch.equal(lazy.data, _run(window, steps=299)[1].data)


def test_gradients_as_small_as_eps_single_gradient_free_steps_are_exact() -> None:
    """Gradients near 1e-8 make torch's eps matter; a catch-up over one step must still be torch's update."""
    dense, lazy, rows = _run(window=1, scale=1e-8)
    torch.testing.assert_close(lazy.data, dense.data, rtol=1e-5, atol=1e-6)
    # Longer catch-ups: eps's share drifts while 1-β2^k grows, so early in training they are approximate.
    dense, lazy, rows = _run(window=128, scale=1e-8)
    rows.flush()
    total_lr = sum(1e-2 * min(1.0, (s + 1) / 30) * (1 - s / 300) for s in range(300))  # 1.45: the most a weight moves
    assert (lazy.data - dense.data).abs().max() < 0.01 * total_lr


def test_rows_a_batch_touches_are_current_before_their_update() -> None:
    """Without the catch-up a rarely touched row would miss the momentum of its earlier updates."""
    dense, lazy, rows = _run(window=1000, steps=100)  # no flush on the way: only the catch-ups
    rows.flush()
    torch.testing.assert_close(lazy.data, dense.data, rtol=1e-5, atol=1e-6)


def test_state_round_trip_continues_identically() -> None:
    _, lazy, rows = _run(window=16, steps=40)
    saved = rows.state()
    copy = nn.Parameter(lazy.data.clone())
    again = LazyAdamW(copy, window=16)
    again.load_state(saved)
    for opt, p in ((rows, lazy), (again, copy)):
        p.grad = torch.sparse_coo_tensor(torch.tensor([[3, 5]]), torch.ones(2, 6), (40, 6), check_invariants=True)
        opt.prepare(torch.tensor([3, 5]))
        opt.step(1e-3)
        opt.flush()
    torch.testing.assert_close(copy.data, lazy.data)


def test_dense_gradient_is_refused() -> None:
    p = nn.Parameter(torch.zeros(3, 2))
    p.grad = torch.ones(3, 2)
    with pytest.raises(TypeError, match="sparse"):
        LazyAdamW(p).step(1e-3)


def test_a_gradient_on_rows_not_prepared_is_refused() -> None:
    """Rows the forward pass read without prepare() may have been stale: that is a bug, not a result."""
    p = nn.Parameter(torch.zeros(5, 2))
    rows = LazyAdamW(p)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.ones(1, 2), (5, 2), check_invariants=True)
    rows.prepare(torch.tensor([1]))
    rows.step(1e-3)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[2]]), torch.ones(1, 2), (5, 2), check_invariants=True)
    with pytest.raises(RuntimeError, match="prepare"):
        rows.step(1e-3)  # row 2 is current at step 0, one gradient-free step behind


def _model_and_batches() -> tuple[nn.Module, list[torch.Tensor]]:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Embedding(30, 4, padding_idx=0), nn.Flatten(), nn.Linear(12, 2))
    gen = torch.Generator().manual_seed(4)
    return model, [torch.randint(0, 30, (5, 3), generator=gen) for _ in range(12)]


def _lazy(model: nn.Module, grad_clip: float = 1e9) -> TrainingOptimizer:
    model[0].sparse = True  # as fast.install makes the tables it runs
    return TrainingOptimizer(model, [model[0]], lr=0.01, weight_decay=0.01, grad_clip=grad_clip, factor=lambda s: 1.0)


def test_the_optimizer_refuses_a_dense_table_rather_than_making_it_sparse() -> None:
    model = _model_and_batches()[0]
    with pytest.raises(ValueError, match="make the table sparse"):
        TrainingOptimizer(model, [model[0]], lr=0.01, weight_decay=0.01, grad_clip=1.0, factor=lambda s: 1.0)
    assert not model[0].sparse


def _train(model: nn.Module, batches: list[torch.Tensor], opt: TrainingOptimizer | torch.optim.Optimizer) -> None:
    """A plain loop: the rows are prepared by the optimizer's hook on the embedding, not by the loop."""
    for ids in batches:
        opt.zero_grad()
        model(ids).square().mean().backward()
        opt.step()


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights as they stand now (the state_dict hook catches lagging rows up)."""
    return model.state_dict()


def _assert_resumes_bitwise(
    model: nn.Module,
    twin: nn.Module,
    make: Callable[[Any], TrainingOptimizer],
    saved_model: dict[str, torch.Tensor],
    saved_opt: dict[str, Any],
    rest: list[torch.Tensor],
) -> None:
    """`twin` restored from the saved model and optimizer states, trained on `rest`, ends where `model` did."""
    restored = make(twin)
    twin.load_state_dict(saved_model)
    restored.load_state_dict(saved_opt)
    _train(twin, rest, restored)
    for a, b in zip(_weights(model).values(), _weights(twin).values(), strict=True):
        assert torch.equal(a, b)


def test_training_optimizer_matches_one_torch_adamw_and_speaks_its_state_format() -> None:
    model, batches = _model_and_batches()
    reference = copy.deepcopy(model)
    lazy = _lazy(model)
    dense = torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.01)
    assert model[0].sparse  # the table's gradient is sparse from now on
    _train(model, batches, lazy)
    _train(reference, batches, dense)
    for (name, a), b in zip(_weights(model).items(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    ours, theirs = lazy.state_dict()["optimizer"], copy.deepcopy(dense.state_dict())  # torch's holds live tensors
    assert ours["param_groups"][0]["params"] == theirs["param_groups"][0]["params"]
    assert sorted(ours["state"]) == sorted(theirs["state"])
    # A state written by one torch AdamW (an older grutext) loads and continues like it.
    lazy.load_state_dict({"optimizer": theirs, "scheduler": {"last_epoch": len(batches)}})
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        a.data.copy_(b.data)
    _train(model, batches[:4], lazy)
    _train(reference, batches[:4], dense)
    for a, b in zip(_weights(model).values(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_state_dict_shows_the_table_caught_up_and_resume_continues_bitwise() -> None:
    """Mid-window the model's state_dict holds the caught-up table, while the optimizer's state keeps the
    lagging one: a run restored from both continues exactly as the uninterrupted run."""
    model, batches = _model_and_batches()
    twin = copy.deepcopy(model)
    lazy = _lazy(model)
    _train(model, batches[:5], lazy)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(lazy.state_dict())
    assert not torch.equal(saved_model["0.weight"], model[0].weight)  # rows still lag in place
    _train(model, batches[5:], lazy)
    _assert_resumes_bitwise(model, twin, _lazy, saved_model, saved_opt, batches[5:])


def test_fused_adamw_and_schedule_are_torchs_adamw_and_lambdalr() -> None:
    """Same weights, moments and learning rates step for step, and each reads the other's state_dict."""
    torch.manual_seed(5)
    ours_model = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))
    torch_model = copy.deepcopy(ours_model)
    factor = lambda step: min(1.0, (step + 1) / 4) * max(0.0, (20 - step) / 20)  # noqa: E731
    ours = FusedAdamW(list(ours_model.parameters()), lr=0.02, weight_decay=0.05)
    ours_schedule = Schedule(ours, factor)
    theirs = torch.optim.AdamW(torch_model.parameters(), lr=0.02, weight_decay=0.05, fused=True)
    theirs_schedule = torch.optim.lr_scheduler.LambdaLR(theirs, factor)

    def steps(count: int) -> None:
        for _ in range(count):
            x = torch.randn(6, 7)
            for model, opt, schedule in ((ours_model, ours, ours_schedule), (torch_model, theirs, theirs_schedule)):
                opt.zero_grad()
                model(x).square().mean().backward()
                opt.step()
                schedule.step()
            assert [ours.lr] == theirs_schedule.get_last_lr()
            for a, b in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=0)

    steps(8)
    mine, torchs = ours.state_dict(), theirs.state_dict()
    assert {k: v for k, v in mine["param_groups"][0].items() if k != "betas"} == {
        k: v for k, v in torchs["param_groups"][0].items() if k != "betas"
    }
    for i, entry in torchs["state"].items():
        for key, value in entry.items():
            torch.testing.assert_close(mine["state"][i][key], value, rtol=0, atol=0)
    assert ours_schedule.state_dict() == {"step": theirs_schedule.state_dict()["last_epoch"]}
    # Each optimizer loads the other's state (copies: the live tensors keep moving), our schedule loads
    # LambdaLR's (as older resumable states hold it), and they go on together.
    ours_state, torch_state = copy.deepcopy(mine), copy.deepcopy(torchs)
    ours.load_state_dict(torch_state)
    theirs.load_state_dict(ours_state)
    ours_schedule.load_state_dict(theirs_schedule.state_dict())
    steps(8)


def test_fused_adamw_refuses_a_state_for_another_model() -> None:
    opt = FusedAdamW([nn.Parameter(torch.zeros(2))], lr=0.1, weight_decay=0.0)
    other = FusedAdamW([nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))], lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError, match="holds 2 weights, the model 1"):
        opt.load_state_dict(other.state_dict())


def test_clipping_the_row_block_clips_the_table_as_torch_does() -> None:
    """step() clips the table's rows with repeats summed: the same norm, scale and update as torch's
    clip_grad_norm_ and AdamW over the dense table."""
    model, batches = _model_and_batches()
    reference = copy.deepcopy(model)
    lazy = _lazy(model, grad_clip=0.05)
    dense = torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.01)
    for ids in batches:  # repeated ids in a batch: their rows' gradients must add up before the norm
        lazy.zero_grad()
        model(ids).square().mean().backward()
        lazy.step()
        dense.zero_grad()
        reference(ids).square().mean().backward()
        assert float(torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05)) > 0.05  # clipping really scales
        dense.step()
    for a, b in zip(_weights(model).values(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class TwoTables(nn.Module):
    """Word rows and a bag of hashed pairs, as GRUClassifier with its bigram head: two sparse tables."""

    def __init__(self) -> None:
        super().__init__()
        self.words = nn.Embedding(30, 4, padding_idx=0)
        self.out = nn.Linear(12, 2)
        self.bag = nn.Embedding(50, 3)
        self.bag_out = nn.Linear(3, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pairs = (ids[:, :-1] * 7 + ids[:, 1:]) % 20 + 30
        bag = self.bag(torch.cat([ids, pairs], dim=1)).mean(dim=1)
        return self.out(self.words(ids).flatten(1)) + self.bag_out(bag)  # type: ignore[no-any-return]


def test_two_tables_match_one_torch_adamw_and_resume_bitwise() -> None:
    torch.manual_seed(5)
    model = TwoTables()
    reference, twin = copy.deepcopy(model), copy.deepcopy(model)
    batches = _model_and_batches()[1]

    def lazy(m: TwoTables) -> TrainingOptimizer:
        m.words.sparse = m.bag.sparse = True  # as fast.install makes the tables it runs
        return TrainingOptimizer(m, [m.words, m.bag], lr=0.01, weight_decay=0.01, grad_clip=1e9, factor=lambda s: 1.0)

    opt = lazy(model)
    assert model.words.sparse and model.bag.sparse
    dense = torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.01)
    _train(model, batches[:5], opt)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    _train(model, batches[5:], opt)
    _train(reference, batches, dense)
    for (name, a), b in zip(_weights(model).items(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    ours, theirs = opt.state_dict()["optimizer"], dense.state_dict()
    assert sorted(ours["state"]) == sorted(theirs["state"]) == [0, 1, 2, 3, 4, 5]
    assert ours["param_groups"][0]["params"] == theirs["param_groups"][0]["params"]
    _assert_resumes_bitwise(model, twin, lazy, saved_model, saved_opt, batches[5:])
