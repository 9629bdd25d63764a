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
