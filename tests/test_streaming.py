"""grutext train --streaming: every local format, held-out validation by hash, --labels, --steps-per-epoch,
resume, torchrun, and (slow) flat memory on a 3 GB file."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from grutext.cli import cli
from grutext.settings import DataSpec
from grutext.streaming import held_out, open_stream
from tests.conftest import TINY, sentiment_rows, write_jsonl

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def train(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["train", *TINY, "--streaming", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_split_folder_streams_with_its_validation_and_test(split_dir: Path, tmp_path: Path) -> None:
    metrics = train(str(split_dir), "-o", str(tmp_path / "m"), "--epochs", "10", "--patience", "10")
    assert metrics["test"]["n"] == 60 and metrics["validation"]["n"] == 40  # type: ignore[index]
    assert metrics["test"]["accuracy"] > 0.8  # type: ignore[index]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["data"]["streaming"] and config["data"]["validation_from"] == "validation split"
    predicted = CliRunner().invoke(cli, ["predict", "-m", str(tmp_path / "m")], input="superb film\n")
    assert predicted.stdout == "pos\n"


@pytest.mark.parametrize("kind", ["csv.gz", "parquet", "txt", "jsonl.gz"])
def test_every_local_format_streams(tmp_path: Path, kind: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sentiment_rows(400, seed=2)
    path = tmp_path / f"data.{kind}"
    if kind == "csv.gz":
        path.write_bytes(
            gzip.compress(("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows)).encode())
        )
    elif kind == "parquet":
        pq.write_table(pa.table({"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}), path)
    elif kind == "txt":
        path.write_text("".join(f"__label__{r['label']} {r['text']}\n" for r in rows), encoding="utf-8")
    else:
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    metrics = train(str(path), "-o", str(tmp_path / "m"), "--epochs", "4")
    expected = sum(held_out(r["text"], 0.1) for r in rows)  # validation: the texts whose hash falls in 10%
    assert metrics["validation"]["n"] == expected > 0  # type: ignore[index]


def test_labels_and_steps_per_epoch(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(400, seed=3))
    metrics = train(str(data), "-o", str(tmp_path / "m"), "--labels", "neg,pos", "--steps-per-epoch", "5")
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]  # type: ignore[union-attr]
    bad = CliRunner().invoke(
        cli, ["train", str(data), "-o", str(tmp_path / "n"), *TINY, "--streaming", "--labels", "neg,meh"]
    )
    assert bad.exit_code == 1 and "label 'pos' is not in --labels (neg, meh)" in bad.output
    assert "Traceback" not in bad.output


def test_the_stream_is_read_one_record_at_a_time(tmp_path: Path) -> None:
    """The reader's file position moves with the records: nothing reads the file ahead of its consumer."""
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": "x " * 500, "label": "a"}] * 5000)
    stream = open_stream(DataSpec(str(path)))
    records = stream.records("train")
    next(records)
    assert 0 < stream.bytes_read < path.stat().st_size / 10


def test_interrupted_streaming_resumes(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(3000, seed=4))
    out = tmp_path / "m"
    args = [sys.executable, "-m", "grutext", "train", str(data), "-o", str(out), *TINY, "--streaming", "--epochs", "30"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=ENV)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("epoch 1:"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stream position" in err and (out / "trainer_state" / "state.json").is_file()
    done = subprocess.run([*args[:-1], "3", "--resume"], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode != 0 and "settings differ" in done.stderr  # --epochs changed: refused
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming at epoch" in done.stderr


def test_streaming_under_torchrun(split_dir: Path, tmp_path: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*torchrun, "-m", "grutext", "train", str(split_dir), "-o", str(tmp_path / "m"), *TINY, "--streaming"],
        capture_output=True, text=True, env={**ENV, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("saved ") == 1
    assert json.loads((tmp_path / "m" / "config.json").read_text())["train"]["world_size"] == 2


@pytest.mark.slow
def test_memory_stays_flat_on_a_3_gb_file(tmp_path: Path) -> None:
    """300 steps over a generated 3 GB jsonl stay under 1.2 GiB of peak RSS."""
    path = tmp_path / "big.jsonl"
    rng = random.Random(0)
    words = ["film", "plot", "superb", "dreadful", "cast", "music", "scene", "story", "awful", "moving"]
    lines = [json.dumps({"text": " ".join(rng.choices(words, k=rng.randint(20, 400))), "label": rng.choice("ab")})
             for _ in range(2000)]  # fmt: skip
    block = ("\n".join(lines) + "\n").encode()
    with path.open("wb") as fh:
        while fh.tell() < 3 * 2**30:
            fh.write(block)
    args = [
        sys.executable, "-m", "grutext", "train", str(path), "-o", str(tmp_path / "m"), "--streaming",
        "--labels", "a,b", "--tokenizer-sample", "20000", "--steps-per-epoch", "300", "--epochs", "1",
    ]  # fmt: skip
    # A wrapper process of its own: RUSAGE_CHILDREN here would be the largest of every child this pytest ran.
    wrapper = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, env=ENV, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    peak = int(done.stdout.split()[-1]) * 1024
    print(f"300 streaming steps over a {path.stat().st_size / 2**30:.1f} GiB jsonl: peak RSS {peak / 2**30:.2f} GiB")
    assert peak < 1.2 * 2**30


def test_steps_per_epoch_epochs_continue_the_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --steps-per-epoch an epoch takes the next steps of the stream: epoch 2 does not start the file again."""
    from grutext.streaming import StreamSource

    reads: list[str] = []
    original = StreamSource.records

    def spy(self: StreamSource, split: str, rank: int = 0, world: int = 1):  # type: ignore[no-untyped-def]
        reads.append(split)
        return original(self, split, rank, world)

    monkeypatch.setattr(StreamSource, "records", spy)
    data = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(2000, seed=5))
    metrics = train(
        str(data), "-o", str(tmp_path / "m"), "--labels", "neg,pos", "--steps-per-epoch", "3", "--shuffle-buffer", "64"
    )
    assert len(metrics["history"]) == 3  # type: ignore[arg-type]
    assert reads.count("train") == 2  # the scan, then one pass that the three epochs share
