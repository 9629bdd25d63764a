"""Real processes and pipes: signals, `| head -1`, output that streams while input is still open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TINY

GRUTEXT = [sys.executable, "-m", "grutext"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_predict_into_head_exits_quietly(trained: Path) -> None:
    lines = "".join(f"line {i} superb\n" for i in range(200_000)).encode()
    producer = subprocess.run(
        f"{' '.join(GRUTEXT)} predict -m {trained} | head -1",
        shell=True,
        input=lines,
        capture_output=True,
        env=ENV,
        timeout=300,
        check=False,
    )
    assert producer.stdout == b"pos\n"
    assert producer.stderr == b"", producer.stderr.decode()


def test_commands_into_head_exit_0_and_train_finishes(trained: Path, split_dir: Path, tmp_path: Path) -> None:
    """A reader that closes the pipe early is no error for evaluate, report or info, even where stderr is the
    pipe; train keeps training (its checkpoint is the result) and finishes."""
    commands = {
        "evaluate": f"evaluate -m {trained} {split_dir}",
        "evaluate --json": f"evaluate -m {trained} {split_dir} --json",
        "report": f"report -m {trained} {split_dir} -o {tmp_path / 'report'}",
        "info": f"info -m {trained}",
        "train": f"train {split_dir} -o {tmp_path / 'm'} {' '.join(TINY)} --epochs 2",
    }
    for name, command in commands.items():
        done = subprocess.run(
            f"{' '.join(GRUTEXT)} {command} 2>&1 | head -c 1 >/dev/null; exit ${{PIPESTATUS[0]}}",
            shell=True,
            executable="/bin/bash",
            capture_output=True,
            env=ENV,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, (name, done.stderr.decode())
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_predict_answers_while_input_is_still_open(trained: Path) -> None:
    proc = subprocess.Popen(
        [*GRUTEXT, "predict", "-m", str(trained)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"wonderful\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"pos\n"  # arrives before we close stdin
        proc.stdin.write(b"dreadful\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"neg\n"
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_ctrl_c_during_train_saves_a_usable_resumable_checkpoint(split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    args = [*GRUTEXT, "train", str(split_dir), "-o", str(out), *TINY, "--epochs", "400", "--patience", "400"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, env=ENV, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until training runs
        if line.startswith("epoch 1:"):
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGINT at epoch" in err and "--resume" in err and "Traceback" not in err
    assert (out / "trainer_state" / "state.json").is_file()
    # The saved (interrupted) checkpoint is usable on its own.
    info = subprocess.run([*GRUTEXT, "info", "-m", str(out), "--json"], capture_output=True, env=ENV, check=True)
    assert b'"labels": ["neg", "pos"]' in info.stdout


def test_sigterm_exits_143_and_resume_finishes(split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    args = [*GRUTEXT, "train", str(split_dir), "-o", str(out), *TINY, "--epochs", "40", "--patience", "1"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, env=ENV, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("epoch 1:"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    resumed = subprocess.run([*args, "--resume"], capture_output=True, env=ENV, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch" in resumed.stderr
