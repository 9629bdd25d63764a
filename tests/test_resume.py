"""Interruption and --resume: a real signal mid-epoch, a saved pickle-free state, bitwise-identical weights."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grutext.config import ModelConfig, TokenizerConfig, TrainConfig
from grutext.errors import ConfigError, Interrupted, TrainingError
from grutext.events import StepDone
from grutext.settings import DataSpec
from grutext.training import train

TOK = TokenizerConfig(kind="word", vocab_size=200)
MODEL = ModelConfig(embed_dim=16, hidden_size=16)
CFG = TrainConfig(epochs=3, batch_size=16, lr=0.01, patience=5, device="cpu")


def signal_at(global_step: int, signum: int = signal.SIGINT):  # type: ignore[no-untyped-def]
    def on_event(event: object) -> None:
        if isinstance(event, StepDone) and event.global_step == global_step:
            os.kill(os.getpid(), signum)

    return on_event


@pytest.mark.parametrize(("stop_at", "signum"), [(7, signal.SIGINT), (15, signal.SIGTERM)])
def test_interrupted_then_resumed_equals_uninterrupted(
    split_dir: Path, tmp_path: Path, stop_at: int, signum: int
) -> None:
    spec = DataSpec(str(split_dir))
    straight = train(spec, TOK, MODEL, CFG, tmp_path / "straight")

    out = tmp_path / "cut"
    with pytest.raises(Interrupted, match=r"saved a resumable state .* --resume") as info:
        train(spec, TOK, MODEL, CFG, out, on_event=signal_at(stop_at, signum))
    assert info.value.signum == signum
    state = sorted(p.name for p in (out / "trainer_state").iterdir())
    assert state == ["best.safetensors", "model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    resumed = train(spec, TOK, MODEL, CFG, out, resume=True)

    a = load_file(str(straight.path / "model.safetensors"))
    b = load_file(str(resumed.path / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["history"][-1]["val_loss"] == straight.metrics["history"][-1]["val_loss"]
    assert not (resumed.path / "trainer_state").exists()


def test_resume_refuses_changed_settings_and_missing_state(split_dir: Path, tmp_path: Path) -> None:
    spec = DataSpec(str(split_dir))
    out = tmp_path / "cut"
    with pytest.raises(Interrupted):
        train(spec, TOK, MODEL, CFG, out, on_event=signal_at(3))
    with pytest.raises(ConfigError, match=r"settings differ .*lr: 0.01 -> 0.02"):
        train(spec, TOK, MODEL, TrainConfig(**{**CFG.__dict__, "lr": 0.02}), out, resume=True)
    no_head = dataclasses.replace(MODEL, bigram_buckets=0)  # the default head, resolved by the first run
    with pytest.raises(ConfigError, match=r"settings differ .*bigram_buckets: 50000 -> 0"):
        train(spec, TOK, no_head, CFG, out, resume=True)
    with pytest.raises(Exception, match="holds no resumable training state"):
        train(spec, TOK, MODEL, CFG, tmp_path / "never", resume=True)


def test_resume_error_shows_the_resolved_learning_rate(split_dir: Path, tmp_path: Path) -> None:
    """An interrupted run at the default lr shows that lr (0.004), not the `None` standing for it."""
    spec = DataSpec(str(split_dir))
    out = tmp_path / "cut"
    default_lr = TrainConfig(**{**CFG.__dict__, "lr": None})
    with pytest.raises(Interrupted):
        train(spec, TOK, MODEL, default_lr, out, on_event=signal_at(3))
    with pytest.raises(ConfigError, match=r"settings differ from the interrupted run \(lr: 0.004 -> 0.02\)"):
        train(spec, TOK, MODEL, TrainConfig(**{**CFG.__dict__, "lr": 0.02}), out, resume=True)
    resumed = train(spec, TOK, MODEL, TrainConfig(**{**CFG.__dict__, "lr": 0.004}), out, resume=True)
    assert resumed.metrics["best_epoch"] >= 1  # the same lr, given explicitly, resumes


def test_resume_refuses_changed_data_and_says_what_to_do(split_dir: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(split_dir, data)
    out = tmp_path / "cut"
    with pytest.raises(Interrupted):
        train(DataSpec(str(data)), TOK, MODEL, CFG, out, on_event=signal_at(3))
    with (data / "train.jsonl").open("a") as fh:
        fh.write('{"text": "one more wonderful film", "label": "pos"}\n')
    with pytest.raises(ConfigError, match=r"data changed since it was saved; restore the data to resume, or start"):
        train(DataSpec(str(data)), TOK, MODEL, CFG, out, resume=True)


def test_nan_loss_names_the_step_and_keeps_the_best_epoch(split_dir: Path, tmp_path: Path) -> None:
    from grutext.events import EpochStarted

    out = tmp_path / "nan"

    def poison(event: object) -> None:  # break the weights after the first epoch was validated and kept
        if isinstance(event, EpochStarted) and event.epoch == 2:
            raise_after_first.append(True)

    raise_after_first: list[bool] = []
    original = torch.nn.functional.cross_entropy

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        loss = original(*args, **kwargs)
        return loss * float("nan") if raise_after_first and loss.requires_grad else loss

    torch.nn.functional.cross_entropy = flaky
    try:
        with pytest.raises(
            TrainingError, match=r"loss became nan at epoch 2, step 1; lower --lr .*kept the best epoch"
        ):
            train(DataSpec(str(split_dir)), TOK, MODEL, CFG, out, on_event=poison)
    finally:
        torch.nn.functional.cross_entropy = original
    assert (out / "model.safetensors").is_file()
