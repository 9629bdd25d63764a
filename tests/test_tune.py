"""grutext tune: a seeded, time-boxed search that keeps the best trial as a normal checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from grutext.cli import cli


def test_tune_keeps_the_best_trial(split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    args = ["tune", str(split_dir), "-o", str(out), "--trials", "4", "--set", "epochs=3", "--set", "vocab_size=200"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    tuning = json.loads((out / "tuning.json").read_text())
    done = [t for t in tuning["trials"] if t["state"] == "complete"]
    assert len(tuning["trials"]) == 4 and done
    assert tuning["best"]["score"] == max(t["score"] for t in done)
    assert json.loads(result.stdout)["params"] == tuning["best"]["params"]
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 3 and config["tokenizer"]["vocab_size"] == 200
    assert config["model"]["hidden_size"] == tuning["best"]["params"]["hidden_size"]
    assert CliRunner().invoke(cli, ["predict", "-m", str(out)], input="superb film\n").exit_code == 0
    assert "trial 0:" in result.stderr and "kept trial with validation" in result.stderr
    assert not list(tmp_path.glob(".tune-*"))  # the trials' folders are gone


def test_tune_refuses_unknown_settings_before_any_trial(split_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["tune", str(split_dir), "-o", str(tmp_path / "t"), "--set", "epochz=3"])
    assert result.exit_code == 1 and "unknown setting(s) epochz" in result.output
    assert not (tmp_path / "t").exists()


def test_tune_shows_progress_through_a_pipe_as_it_goes(split_dir: Path, tmp_path: Path) -> None:
    """Each epoch of each trial is a line on stderr as it ends, also when stderr is a pipe, not a terminal."""
    import os
    import subprocess
    import sys

    args = ["tune", str(split_dir), "-o", str(tmp_path / "t"), "--trials", "3", "--set", "epochs=3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "grutext", *args, "--set", "vocab_size=200"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    running = proc.poll() is None
    rest = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, rest
    assert first.startswith("trial 0, epoch 1: validation accuracy ") and running
    assert "trial 2, epoch 3:" in rest or "trial 2: pruned" in rest


def test_the_first_trial_is_the_defaults(split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    args = ["tune", str(split_dir), "-o", str(out), "--trials", "2", "--set", "epochs=2", "--set", "vocab_size=200"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    first = json.loads((out / "tuning.json").read_text())["trials"][0]
    assert first["defaults"] is True and first["state"] == "complete"
    from grutext.config import ModelConfig, TrainConfig

    # the settings the defaults resolved to, named as the search names them
    assert first["params"]["hidden_size"] == ModelConfig().hidden_size
    assert first["params"]["batch_size"] == TrainConfig().batch_size
    assert first["params"]["weight_decay"] == TrainConfig().weight_decay


def test_the_timeout_stops_a_running_trial_and_keeps_the_best_finished_one(split_dir: Path, tmp_path: Path) -> None:
    """The search's clock runs out during trial 1 (here: after the defaults trial's last step, by a clock
    that jumps): trial 1 stops at its next step, unkept, and trial 0 is the result."""
    import time

    import pytest

    from grutext import tune as tune_module
    from grutext.events import EpochDone

    real = time.perf_counter
    jumped: list[float] = []

    def clock() -> float:
        return real() + (jumped[0] if jumped else 0.0)

    mp = pytest.MonkeyPatch()
    mp.setattr(tune_module.time, "perf_counter", clock)
    seen: list[int] = []

    def on_epoch(number: int, event: EpochDone) -> None:
        seen.append(number)
        if number == 0 and event.epoch == 2 and not jumped:
            jumped.append(3600.0)  # an hour passes: the 60-second search is out of time

    try:
        result = tune_module.tune(
            str(split_dir), tmp_path / "t", trials=5, timeout=60, fixed={"epochs": 2, "vocab_size": 200},
            on_epoch=on_epoch,
        )  # fmt: skip
    finally:
        mp.undo()
    states = [t["state"] for t in result.trials]
    assert states == ["complete", "out of time"]  # optuna's own clock had not run out: trial 1 started
    assert result.trials[0].get("defaults") is True and set(seen) == {0} and result.best_score > 0


def test_small_data_scores_each_trial_on_three_carves(tmp_path: Path) -> None:
    from grutext.tune import tune
    from tests.conftest import sentiment_rows, write_jsonl

    data = write_jsonl(tmp_path / "reviews.jsonl", sentiment_rows(200, seed=5))  # no validation split of its own
    heard: list[tuple[int, int | None]] = []
    result = tune(
        str(data), tmp_path / "t", trials=2, fixed={"epochs": 2, "vocab_size": 200},
        on_epoch=lambda number, event, carve=None: heard.append((number, carve)),
    )  # fmt: skip
    assert (0, None) in heard and (0, 2) in heard and (0, 3) in heard  # every carve's epochs are heard
    for trial in result.trials:
        if trial["state"] == "complete":
            assert len(trial["scores"]) == 3 and trial["score"] == sum(trial["scores"]) / 3
    assert not list(tmp_path.glob(".tune-*"))
    one = tune(str(data), tmp_path / "one", trials=1, fixed={"epochs": 2, "vocab_size": 200}, carves=1)
    assert "scores" not in one.trials[0] and one.trials[0]["score"] == result.trials[0]["scores"][0]
