"""Data-parallel training under torchrun, 2 CPU processes with gloo on localhost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import grutext

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
SMALL = ["--embed-dim", "16", "--hidden-size", "16", "--vocab-size", "200", "--lr", "0.01", "--seed", "3"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*TORCHRUN, "-m", "grutext", "train", *args], capture_output=True, text=True, env=ENV, timeout=300
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_two_ranks_of_16_take_the_steps_of_one_process_of_32(split_dir: Path, tmp_path: Path) -> None:
    torchrun(
        str(split_dir),
        "-o",
        str(tmp_path / "ddp"),
        *SMALL,
        "--epochs",
        "2",
        "--dropout",
        "0",
        "--word-dropout",
        "0",
        "--batch-size",
        "16",
        "--bigrams",
        "64",  # both heads' losses are normalised over the global batch too
    )
    grutext.train(
        split_dir, tmp_path / "one", embed_dim=16, hidden_size=16, vocab_size=200, lr=0.01, seed=3, epochs=2,
        dropout=0.0, word_dropout=0.0, batch_size=32, backend="reference", bigram_buckets=64,
    )  # fmt: skip
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-4, msg=name)
    config = (tmp_path / "ddp" / "config.json").read_text()
    assert '"world_size": 2' in config and (tmp_path / "ddp" / "model.onnx").is_file()


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(split_dir: Path, tmp_path: Path) -> None:
    args = [str(split_dir), *SMALL, "--epochs", "4", "--patience", "4", "--batch-size", "8"]
    torchrun(*args, "-o", str(tmp_path / "straight"))
    out = tmp_path / "cut"
    proc = subprocess.Popen(
        [*TORCHRUN, "-m", "grutext", "train", *args, "-o", str(out)], stderr=subprocess.PIPE, text=True, env=ENV
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("epoch 1:"):
            break
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
    _, err = proc.communicate(timeout=120)
    assert (out / "trainer_state" / "state.json").is_file(), err[-3000:]
    assert "saved a resumable state" in err
    resumed = torchrun(*args, "-o", str(out), "--resume")
    assert "resuming at epoch" in resumed.stderr
    a, b = weights(tmp_path / "straight"), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_progress_comes_from_rank_0_only(split_dir: Path, tmp_path: Path) -> None:
    done = torchrun(str(split_dir), "-o", str(tmp_path / "m"), *SMALL, "--epochs", "1", "--json")
    assert done.stderr.count("epoch 1:") == 1 and done.stderr.count("saved ") == 1
    assert len(done.stdout.splitlines()) == 1 and '"world_size"' not in done.stdout


@pytest.mark.parametrize("flag", [["--backend", "fast"]])
def test_the_fast_backend_is_refused_under_torchrun(split_dir: Path, tmp_path: Path, flag: list[str]) -> None:
    done = torchrun(str(split_dir), "-o", str(tmp_path / "m"), *SMALL, "--epochs", "1", *flag, check=False)
    assert done.returncode != 0 and "cannot train data-parallel" in done.stderr


def test_under_torchrun_every_kind_of_run_takes_its_ranks_gpu(
    split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device choice, on the CPU: with a process group of 2 on CUDA, rank 1 gets cuda:1, the reference
    backend, and a DistributedDataParallel wrapper with device_ids=[1]; in-memory and streamed runs alike go
    through that one choice (the streamed one used to wrap with device_ids=[None])."""
    from grutext import runtime, training
    from grutext.distributed import Group

    monkeypatch.setattr(runtime, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(runtime.Group, "from_env", staticmethod(lambda kind: Group(1, 2, 1, "cuda:1")))
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    rt = runtime.start("auto", "auto")
    assert rt.device == torch.device("cuda", 1) and chosen == [torch.device("cuda", 1)]
    assert rt.backend == "reference" and rt.rank == 1 and not rt.leader
    wrapped: list[object] = []
    monkeypatch.setattr(
        torch.nn.parallel, "DistributedDataParallel", lambda model, device_ids: wrapped.append(device_ids)
    )
    rt.wrap(torch.nn.Linear(2, 2))
    assert wrapped == [[1]]

    class Started(Exception):
        pass

    starts: list[tuple[str, str]] = []

    def spy(device: str, backend: str) -> runtime.Runtime:
        starts.append((device, backend))
        raise Started

    monkeypatch.setattr(training, "start", spy)
    for streaming in (False, True):
        with pytest.raises(Started):
            grutext.train(split_dir, tmp_path / f"m{streaming}", streaming=streaming, device="cuda")
    assert starts == [("cuda", "auto"), ("cuda", "auto")]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_streaming_under_torchrun_on_two_gpus(split_dir: Path, tmp_path: Path) -> None:
    torchrun(str(split_dir), "-o", str(tmp_path / "m"), *SMALL, "--streaming", "--device", "cuda", "--epochs", "2")
    assert (tmp_path / "m" / "model.safetensors").is_file()
