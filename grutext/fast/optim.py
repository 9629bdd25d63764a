"""The fast backend's optimizer (part of grutext.fast): AdamW for the embedding table paying only for the rows a
batch touches (LazyAdamW), and torch's fused AdamW kernel and a LambdaLR-equivalent schedule for the rest
without torch.optim (FusedAdamW, Schedule: torch.optim imports torch._dynamo), together as TrainingOptimizer.
The reference backend (grutext.backend) uses torch.optim.AdamW and LambdaLR.

Why lazy rows: a sentence batch touches a few hundred of the table's rows, yet torch's AdamW (fused or not) reads and
writes every row at every step, and the dense gradient behind it is zero-filled, clipped and freed each step:
on sst2 with the one-direction 128/128 model the fused AdamW update alone took 1.5 ms of a 7.8 ms step.

Rows a step does not touch still move under AdamW: their moments decay, weight decay shrinks them and the
decayed momentum keeps pushing. Those gradient-free steps have a closed form, so a row is brought up to date
only when a batch reads it, and every row at once every `window` steps and before anyone reads the
weights (`flush`). Per gradient-free step k after the row's last gradient at step s, with ρ = β1/√β2,
d_k = 1 - lr_k·wd and c_k = lr_k·√(1-β2^k)/(1-β1^k):

    m_k = β1 m_{k-1},   v_k = β2 v_{k-1},   p_k = d_k p_{k-1} - c_k ρ^(k-s) m_s/(√v_s + eps_s)

torch's denominator is √v_k/√(1-β2^k) + eps; eps_s = eps·√(1-β2^(s+1))/√β2 is it exactly for k = s+1 and
drifts by √(1-β2^k) and β2^(-(k-s)/2) after that, while ρ^(k-s) discounts every later step. Steps with a
gradient are torch's own update. tests/test_optim.py holds the weights to torch's AdamW within 1e-5 over
300 steps of rows touched from 90% to 0.5% of the time; on a real model the two drift apart early in
training about as a change of float rounding does, only sooner.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

UNPREPARED = "LazyAdamW: a gradient reached rows that were not prepare()d before the forward"
WINDOW = 128  # steps between dense catch-ups; keeps ρ^WINDOW (1.6e-6 at the default betas) far from underflow


def native_rows() -> Any:
    """The native kernel's module where it is built (its lazy_* functions), else None: the tensor ops below."""
    from grutext.fast import native

    return native.kernel()


class LazyAdamW:
    """AdamW (torch's semantics: decoupled weight decay, bias correction) for one weight whose gradient is a
    sparse COO tensor of touched rows, as nn.Embedding(sparse=True) produces.

    Each training step: `prepare(ids)` before the forward pass (the rows it reads are brought up to date),
    optionally `gradient()` to clip it, then `step(lr)` after the backward pass, with the learning rate the
    other weights use. The rows prepared get torch's fused AdamW update, with a zero gradient where the batch
    left one (the padding row): exactly what torch's AdamW does to them."""

    def __init__(
        self,
        weight: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        window: int = WINDOW,
    ) -> None:
        self.weight = weight
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.window = window
        self.rho = self.beta1 / math.sqrt(self.beta2)
        self.exp_avg = torch.zeros_like(weight)
        self.exp_avg_sq = torch.zeros_like(weight)
        self.last = torch.zeros(weight.size(0), dtype=torch.int64)  # the step each row is current at
        self.steps = 0
        gaps = torch.arange(window + 1, dtype=torch.float64)
        self.powers = torch.stack([self.rho**gaps, self.beta1**gaps, self.beta2**gaps])  # [3, window + 1]
        self.table = torch.zeros(3, window + 1, dtype=torch.float64)
        self._restart_window()
        self._prepared: torch.Tensor | None = None  # the rows prepare() brought up to date
        self._copies: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # tensor ops: their p, m, v
        self._gradient: torch.Tensor | None = None
        # The native kernel's row work (three calls a step, in place), for float32 tables on the CPU
        self.native = native_rows() if weight.dtype == torch.float32 and weight.device.type == "cpu" else None

    def _eps_at(self, step: int) -> float:
        """eps in the units of m / √v of a row whose last gradient came at `step` (see the module docstring)."""
        return self.eps * math.sqrt(1 - self.beta2 ** (step + 1)) / math.sqrt(self.beta2)

    def _restart_window(self) -> None:
        """Tables over the gradient-free steps since `base`, for k = base+1 .. base+j: table[0, j] = Π d_k,
        table[1, j] = Σ c_k ρ^(k-base) / table[0, k-base] (float64: differences of sums lose nothing), and
        table[2, j] = eps_s of a row current at step base+j."""
        self.base = self.steps
        self.table[:, 0] = torch.tensor([1.0, 0.0, self._eps_at(self.base)], dtype=torch.float64)

    def _catch_up(self, p: torch.Tensor, m: torch.Tensor, v: torch.Tensor, since: torch.Tensor, until: int) -> None:
        """In place: rows p [n, E] and their moments m, v [n, E], each current at step since[i] (>= base),
        taken through the gradient-free steps since[i]+1 .. until."""
        j = since - self.base  # [n]
        u = until - self.base
        decay, push, eps_s = self.table[:, j]  # [n] each
        beta1_gap, beta2_gap = self.powers[1:, u - j]  # [n] each
        keep = self.table[0, u] / decay
        move = self.table[0, u] * (self.table[1, u] - push) / self.powers[0, j]
        # Every per-row factor in one float64 -> float32 conversion, [5, n, 1]
        keep, move, eps_s, beta1_gap, beta2_gap = (
            torch.stack([keep, move, eps_s, beta1_gap, beta2_gap]).to(p.dtype).unsqueeze(2).unbind(0)
        )
        # m_s / (√v_s + eps_s): eps_s = eps·√(1-β2^(s+1))/√β2 is exact for the first gradient-free step (eps / √v
        # rescaled into the row's own units), and drifts from step to step only by √(1-β2^k) (early in training)
        # and β2^(-gap/2), while ρ^gap discounts each later step. Clamped before the root: torch's sqrt of 0
        # takes a slow path (100 us against 18 for a [250, 128] block).
        ratio = v.clamp_min(1e-30).sqrt_().add_(eps_s)
        ratio = torch.div(m, ratio, out=ratio)
        p.mul_(keep).sub_(ratio.mul_(move))
        m.mul_(beta1_gap)
        v.mul_(beta2_gap)

    @torch.no_grad()
    def prepare(self, ids: torch.Tensor) -> None:
        """Bring the rows that `ids` will read up to the current step. Call before every forward pass that
        reads the table: a lagging row would give the forward pass (and so the gradient) stale weights."""
        rows = torch.unique(ids)
        if self.native is not None:  # in place, weight, moments and step together
            self.native.lazy_prepare(
                self.weight.data, self.exp_avg, self.exp_avg_sq, self.last, rows, self.table, self.powers,
                self.base, self.steps,
            )  # fmt: skip
            self._prepared, self._copies, self._gradient = rows, None, None
            return
        p = self.weight.data.index_select(0, rows)
        m, v = self.exp_avg.index_select(0, rows), self.exp_avg_sq.index_select(0, rows)
        self._catch_up(p, m, v, self.last.index_select(0, rows), self.steps)
        self.weight.data.index_copy_(0, rows, p)
        self._prepared, self._copies, self._gradient = rows, (p, m, v), None

    @torch.no_grad()
    def gradient(self) -> torch.Tensor | None:
        """The table's gradient as a dense block over the prepared rows, [rows, E], duplicates summed (so its
        norm is the whole table's); None before prepare(). Clipping may scale it in place: step() uses it."""
        grad = self.weight.grad
        if grad is not None and not grad.is_sparse:
            raise TypeError("LazyAdamW needs a sparse gradient: build the embedding with sparse=True")
        if self._prepared is None:
            if grad is not None and grad._nnz():
                raise RuntimeError(UNPREPARED)
            return None
        rows = self._prepared
        if self._gradient is None and self.native is not None:
            if grad is None:
                self._gradient = self.weight.new_zeros(len(rows), self.weight.size(1))
            else:
                self._gradient = self.native.lazy_gradient(rows, grad._indices()[0], grad._values())
        if self._gradient is None:
            block = self.weight.new_zeros(len(rows), self.weight.size(1))
            if grad is not None:
                # Not coalesced: searchsorted finds each entry's row and index_add_ sums the repeats.
                index, values = grad._indices()[0], grad._values()
                where = torch.searchsorted(rows, index)
                if not torch.equal(rows[where.clamp_max(len(rows) - 1)], index):
                    raise RuntimeError(UNPREPARED)
                block.index_add_(0, where, values)
            self._gradient = block
        return self._gradient

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """One AdamW step at learning rate `lr`: the prepared rows now, every other row in closed form later."""
        block = self.gradient()
        rows, copies = self._prepared, self._copies
        self._prepared, self._copies, self._gradient = None, None, None
        self.steps += 1
        t = self.steps
        if rows is not None and block is not None and copies is None and self.native is not None:
            self.native.lazy_adamw(
                self.weight.data, self.exp_avg, self.exp_avg_sq, self.last, rows, block, lr, self.beta1,
                self.beta2, self.eps, self.weight_decay, t,
            )  # fmt: skip
        elif rows is not None and block is not None and copies is not None:
            p, m, v = copies
            torch._fused_adamw_(
                [p],
                [block],
                [m],
                [v],
                [],
                [torch.tensor(float(t))],
                amsgrad=False,
                lr=lr,
                beta1=self.beta1,
                beta2=self.beta2,
                weight_decay=self.weight_decay,
                eps=self.eps,
                maximize=False,
            )
            self.weight.data.index_copy_(0, rows, p)
            self.exp_avg.index_copy_(0, rows, m)
            self.exp_avg_sq.index_copy_(0, rows, v)
            self.last.index_fill_(0, rows, t)
        # step t, as a gradient-free step for every row it did not touch
        j = t - self.base
        decay, push = self.table[:2, j - 1].tolist()
        decay *= 1 - lr * self.weight_decay
        push += lr * math.sqrt(1 - self.beta2**t) / (1 - self.beta1**t) * self.rho**j / decay
        self.table[:, j] = torch.tensor([decay, push, self._eps_at(t)], dtype=torch.float64)
        if j >= self.window:
            self.flush()

    @torch.no_grad()
    def flush(self) -> None:
        """Bring every row up to the current step (before the weights are read, and every `window` steps)."""
        self._catch_up(self.weight.data, self.exp_avg, self.exp_avg_sq, self.last, self.steps)
        self.last.fill_(self.steps)
        self._restart_window()

    @torch.no_grad()
    def current(self) -> torch.Tensor:
        """The table as it stands at the current step, without changing this optimizer's state."""
        p = self.weight.data.clone()
        self._catch_up(p, self.exp_avg.clone(), self.exp_avg_sq.clone(), self.last, self.steps)
        return p

    def zero_grad(self) -> None:
        self.weight.grad = None

    def state(self) -> dict[str, Any]:
        """The state in torch AdamW's per-parameter format plus the rows' lag, unflushed, so that a run resumed
        from it takes exactly the steps an uninterrupted run takes."""
        return {
            "step": torch.tensor(float(self.steps)),
            "exp_avg": self.exp_avg.clone(),
            "exp_avg_sq": self.exp_avg_sq.clone(),
            "last": self.last.clone(),
            "window": self.table[:2, : self.steps - self.base + 1].clone(),
            "window_base": self.base,
            "lagging_weight": self.weight.data.clone(),  # the model's state_dict shows the table caught up
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """The inverse of `state()`; also takes a plain torch AdamW entry (every row current at its step)."""
        self.steps = int(state["step"])
        if "lagging_weight" in state:
            self.weight.data.copy_(state["lagging_weight"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        if "last" in state:
            self.last.copy_(state["last"])
            self.base = int(state["window_base"])
            window = state["window"]
            width = window.size(1)
            self.table[:2, :width] = window
            self.table[2, :width] = torch.tensor([self._eps_at(self.base + j) for j in range(width)])
        else:
            self.last.fill_(self.steps)
            self._restart_window()


class FusedAdamW:
    """torch's AdamW with `fused=True`, calling its kernel (`torch._fused_adamw_`) directly, in its state format.

    Why not torch.optim.AdamW itself: building any torch optimizer imports torch._dynamo (and sympy), 1 s of
    CPU at start-up and 0.6 s of interpreter teardown at exit, a tenth of a one-epoch sst2 run; and its step
    wraps the 0.1 ms kernel in 0.15 ms of hooks and checks. tests/test_optim.py holds it to torch's AdamW."""

    def __init__(
        self,
        params: list[nn.Parameter],
        *,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = params
        self.lr = self.initial_lr = lr
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in params]

    @torch.no_grad()
    def step(self) -> None:
        ready = [(p, s) for p, s in zip(self.params, self.state, strict=True) if p.grad is not None]
        if not ready:
            return
        for p, s in ready:
            if not s:  # as torch: the step count is a float32 tensor beside the weight
                s["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        steps = [s["step"] for _, s in ready]
        torch._foreach_add_(steps, 1)
        torch._fused_adamw_(
            [p for p, _ in ready],
            [p.grad for p, _ in ready],  # type: ignore[misc]
            [s["exp_avg"] for _, s in ready],
            [s["exp_avg_sq"] for _, s in ready],
            [],
            steps,
            amsgrad=False,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=self.weight_decay,
            eps=self.eps,
            maximize=False,
        )

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def param_group(self) -> dict[str, Any]:
        """torch AdamW's param_groups[0] (fused), with the scheduler's initial_lr."""
        return {
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": False,
            "foreach": None,
            "maximize": False,
            "capturable": False,
            "differentiable": False,
            "fused": True,
            "decoupled_weight_decay": True,
            "initial_lr": self.initial_lr,
            "params": list(range(len(self.params))),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"state": {i: s for i, s in enumerate(self.state) if s}, "param_groups": [self.param_group()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """torch AdamW's state_dict (one group), as this class or torch's own writes it."""
        (group,) = state["param_groups"]
        if len(group["params"]) != len(self.params):
            raise ValueError(f"the optimizer state holds {len(group['params'])} weights, the model {len(self.params)}")
        self.lr, self.initial_lr = float(group["lr"]), float(group.get("initial_lr", group["lr"]))
        self.state = [{} for _ in self.params]
        for i, entry in state["state"].items():
            p = self.params[int(i)]
            self.state[int(i)] = {
                "step": torch.as_tensor(entry["step"], dtype=torch.float32).to(p.device),
                "exp_avg": entry["exp_avg"].to(p),
                "exp_avg_sq": entry["exp_avg_sq"].to(p),
            }


class Schedule:
    """The learning rate at each step, initial_lr x factor(step), as torch's LambdaLR computes it, without
    importing torch.optim (see FusedAdamW). Its state is {"step": n}; LambdaLR's ({"last_epoch": n, ...}),
    which earlier resumable states hold, loads too."""

    def __init__(self, optimizer: FusedAdamW, factor: Callable[[int], float]) -> None:
        self.optimizer, self.factor = optimizer, factor
        self.steps = 0
        self._apply()

    def _apply(self) -> None:
        self.optimizer.lr = self.optimizer.initial_lr * self.factor(self.steps)

    def step(self) -> None:
        self.steps += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["step"] if "step" in state else state["last_epoch"])
        self._apply()


def clip_gradients(grads: list[torch.Tensor], max_norm: float) -> None:
    """clip_grad_norm_ over these gradients, in place, without its multiply when the norm is already within
    bounds (the scale would be exactly 1.0): on sentence-sized batches that pass is 5% of a step. The
    embedding table's comes as its block of rows (LazyAdamW.gradient)."""
    total = nn.utils.get_total_norm(grads)
    scale = max_norm / (total + 1e-6)
    if not float(scale) >= 1.0:  # also when the norm is not finite, as torch does
        torch._foreach_mul_(grads, scale)


class _Table:
    """One embedding table on LazyAdamW: its optimizer, its position among the model's parameters (the one
    torch AdamW's state_dict numbers it by) and its key in the model's state_dict."""

    def __init__(self, rows: LazyAdamW, index: int, key: str) -> None:
        self.rows, self.index, self.key = rows, index, key
        self.stale = False  # rows lag behind the current step


class TrainingOptimizer:
    """The fast backend's optimizer: clipping, AdamW and the schedule in one `step()`. FusedAdamW updates every
    weight but the embedding tables (the word table, and the bigram head's table), which get LazyAdamW (their
    gradients are then sparse). Keeps one learning rate (the schedule drives `dense`) and reads and writes torch
    AdamW's state_dict format for all weights, as if one AdamW held them.

    The tables' rows are brought up to date by hooks, so the training loop needs to know nothing of them: a
    forward pre-hook on each table prepares the rows a training batch reads (and catches every row up before an
    evaluation pass), and a state_dict hook on the model shows the tables as they stand now."""

    def __init__(
        self,
        model: nn.Module,
        tables: Sequence[nn.Embedding],
        *,
        lr: float,
        weight_decay: float,
        grad_clip: float,
        factor: Callable[[int], float],
    ) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.grad_clip = grad_clip
        self.tables: list[_Table] = []
        for embedding in tables:
            if not embedding.weight.requires_grad:  # a table that is not learning needs no optimizer at all
                continue
            if not embedding.sparse:
                raise ValueError("LazyAdamW updates the rows a batch reads: make the table sparse (fast.install)")
            index = next(i for i, p in enumerate(self.params) if p is embedding.weight)
            prefix = next(name for name, module in model.named_modules() if module is embedding)
            table = _Table(LazyAdamW(embedding.weight, weight_decay=weight_decay), index, f"{prefix}.weight")
            embedding.register_forward_pre_hook(functools.partial(self._before_forward, table))
            self.tables.append(table)
        if self.tables:
            # torch marks the hook with an attribute, which a bound method cannot take: a plain function.
            model.register_state_dict_post_hook(lambda *args: self._caught_up(*args))  # type: ignore[no-untyped-call]
        sparse = {table.index for table in self.tables}
        self.dense_positions = [i for i in range(len(self.params)) if i not in sparse]
        self.dense = FusedAdamW([self.params[i] for i in self.dense_positions], lr=lr, weight_decay=weight_decay)
        self.schedule = Schedule(self.dense, factor)

    @staticmethod
    def _before_forward(table: _Table, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if module.training and torch.is_grad_enabled():
            table.rows.prepare(args[0])  # the rows this batch reads, brought up to date
        elif table.stale:
            table.rows.flush()
            table.stale = False

    def _caught_up(self, module: nn.Module, state: dict[str, Any], prefix: str, metadata: Any) -> None:
        for table in self.tables:
            key = prefix + table.key
            if table.stale and key in state:
                state[key] = table.rows.current()

    @property
    def lr(self) -> float:
        return self.dense.lr

    def zero_grad(self) -> None:
        self.dense.zero_grad()
        for table in self.tables:
            table.rows.zero_grad()

    def step(self) -> None:
        """Clip every gradient (each table's as its block of rows), update, and advance the schedule."""
        grads = [p.grad for p in self.dense.params if p.grad is not None]
        grads += [block for table in self.tables if (block := table.rows.gradient()) is not None]
        clip_gradients(grads, self.grad_clip)
        self.dense.step()
        for table in self.tables:
            table.rows.step(self.dense.lr)
            table.stale = True
        self.schedule.step()

    def state_dict(self) -> dict[str, Any]:
        state = self.dense.state_dict()
        merged = {self.dense_positions[int(i)]: s for i, s in state["state"].items()}
        for table in self.tables:
            if table.rows.steps:
                merged[table.index] = table.rows.state()
        groups = [{**g, "params": list(range(len(self.params)))} for g in state["param_groups"]]
        return {"optimizer": {"state": merged, "param_groups": groups}, "scheduler": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A state this class wrote, or one torch AdamW wrote for the same weights (every row then current at
        its step): an older run whose bigram table was updated densely resumes here too."""
        optimizer = state["optimizer"]
        self.schedule.load_state_dict(state["scheduler"])
        entries = {int(i): s for i, s in optimizer["state"].items()}
        for table in self.tables:
            if table.index in entries:
                table.rows.load_state(entries.pop(table.index))
            table.stale = True
        dense_index = {position: i for i, position in enumerate(self.dense_positions)}
        dense = {dense_index[i]: s for i, s in entries.items()}
        groups = [{**g, "params": list(range(len(self.dense_positions)))} for g in optimizer["param_groups"]]
        self.dense.load_state_dict({"state": dense, "param_groups": groups})
