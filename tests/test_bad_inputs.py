"""The bad-input matrix: each case ends with exit 1 (usage: 2), one `Error:` line saying what, where and how
to fix it, no traceback, inputs byte-identical, and no output directory left behind."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from grutext.cli import cli
from tests.conftest import TINY, sentiment_rows, write_jsonl

GOOD = sentiment_rows(40)


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def jsonl_bytes(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


# (name, file name, content, extra args, expected message fragment)
TRAIN_CASES: list[tuple[str, str, bytes | None, list[str], str]] = [
    ("missing path", "nope.csv", None, [], "no such file or directory"),
    ("unsupported extension", "data.xlsx", b"PK\x03\x04", [], "unsupported file type .xlsx; use one of"),
    ("empty file", "empty.csv", b"", [], "is empty"),
    ("header-only csv", "h.csv", b"text,label\n", [], "has a header (text, label) but no rows"),
    ("malformed csv", "m.csv", b'text,label\n"fine",a\n"open quote,b\n', [], "line 3: malformed CSV"),
    ("ragged csv", "r.csv", b"text,label\nfine,a\nx,y,z\n", [], "line 3: 3 fields where the header has 2"),
    ("malformed jsonl", "m.jsonl", jsonl_bytes(GOOD[:3]) + b'{"text": "x", "label": \n', [], "line 4: invalid JSON"),
    ("jsonl not objects", "l.jsonl", b"[1, 2]\n", [], "line 1: expected a JSON object"),
    ("misnamed text column", "c.jsonl", jsonl_bytes(GOOD), ["--text-column", "body"], "column 'body' not in"),
    (
        "misnamed label column",
        "c.jsonl",
        jsonl_bytes(GOOD),
        ["--label-column", "stars"],
        "(columns: text, label); pass --label-column",
    ),
    ("no label column", "n.jsonl", jsonl_bytes([{"a": "x", "b": "y", "c": "z"}] * 4), [], "cannot tell which column"),
    (
        "empty texts",
        "e.jsonl",
        jsonl_bytes([*GOOD, {"text": " ", "label": "pos"}]),
        [],
        "1 row(s) with an empty or missing text or label (first at line 41)",
    ),
    ("null labels", "n.jsonl", jsonl_bytes([*GOOD, {"text": "x", "label": None}]), [], "pass --on-bad-row skip"),
    (
        "single class",
        "s.jsonl",
        jsonl_bytes([{"text": f"t {i}", "label": "a"} for i in range(20)]),
        [],
        "single class ('a')",
    ),
    (
        "mixed label types",
        "x.jsonl",
        jsonl_bytes([{"text": "a", "label": 1}, {"text": "b", "label": "b"}] * 5),
        [],
        "mixes label types (int and str",
    ),
    (
        "float labels",
        "f.jsonl",
        jsonl_bytes([{"text": "a", "label": 0.5}, {"text": "b", "label": 1.5}] * 5),
        [],
        "regression is not supported",
    ),
    ("non-utf8 bytes", "l.csv", "text,label\ncafé,a\n".encode("latin-1"), [], "line 2: bytes that are not valid utf-8"),
    ("binary file", "b.jsonl", random.Random(0).randbytes(5000), [], "binary file"),
    ("not gzip", "z.jsonl.gz", b"plain text", [], "not a valid gzip file"),
    ("bad parquet", "p.parquet", b"PAR1 nonsense", [], "not a readable parquet file"),
    ("fasttext without labels", "f.txt", b"just some text\n", [], "line 1: no __label__ prefix"),
    (
        "list labels in csv-like single column",
        "m.jsonl",
        jsonl_bytes([{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": "z"}] * 3),
        [],
        "multi-label",
    ),
]


@pytest.mark.parametrize(("name", "file", "content", "extra", "message"), TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_input(
    tmp_path: Path, name: str, file: str, content: bytes | None, extra: list[str], message: str
) -> None:
    data = tmp_path / "in"
    data.mkdir()
    if content is not None:
        (data / file).write_bytes(content)
    before = snapshot(data)
    out = tmp_path / "out" / "model"
    result = CliRunner().invoke(cli, ["train", str(data / file), "--output", str(out), *TINY, *extra])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.splitlines()
    assert lines[-1].startswith("Error: ") and sum(line.startswith("Error:") for line in lines) == 1
    assert message in lines[-1], lines[-1]
    assert "Traceback" not in result.output
    assert snapshot(data) == before
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_bad_rows_skip_reports_the_count(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [*GOOD, {"text": "", "label": "pos"}, {"text": "x", "label": None}])
    result = CliRunner().invoke(
        cli, ["train", str(path), "-o", str(tmp_path / "m"), *TINY, "--max-steps", "1", "--on-bad-row", "skip"]
    )
    assert result.exit_code == 0, result.output
    assert "skipped 2 bad row(s) in train" in result.stderr


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (b"just a text with no label\n", "line 42: 1 fields where the header has 2: a value is missing"),
        (b"a,text,with,commas,pos\n", "line 42: 5 fields where the header has 2: quote fields that contain"),
    ],
)
def test_ragged_csv_rows_are_bad_rows(tmp_path: Path, row: bytes, message: str) -> None:
    """A row with too few or too many fields says which, and --on-bad-row skip drops it with the count."""
    csv = b"text,label\n" + b"".join(f"{r['text']},{r['label']}\n".encode() for r in GOOD) + row
    path = tmp_path / "d.csv"
    path.write_bytes(csv)
    failed = CliRunner().invoke(cli, ["train", str(path), "-o", str(tmp_path / "m"), *TINY])
    assert failed.exit_code == 1 and message in failed.output and "--on-bad-row skip" in failed.output
    skipped = CliRunner().invoke(
        cli, ["train", str(path), "-o", str(tmp_path / "m"), *TINY, "--max-steps", "1", "--on-bad-row", "skip"]
    )
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 1 bad row(s) in train" in skipped.stderr


def test_a_mistyped_local_path_names_both_readings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["train", "mydata", "-o", "m"])
    assert result.exit_code == 1
    assert "no file or folder 'mydata' here, and no hub dataset by that name in the local cache" in result.output


def test_interrupted_output_suggests_resume_and_overwrite_says_what_it_discards(
    split_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    (out / "trainer_state").mkdir(parents=True)
    (out / "trainer_state" / "state.json").write_text(json.dumps({"loop": {"epoch": 3, "step": 41}}))
    refused = CliRunner().invoke(cli, ["train", str(split_dir), "-o", str(out), *TINY])
    assert refused.exit_code == 1
    assert "holds an interrupted run that can be resumed: add --resume to continue it" in refused.output
    replaced = CliRunner().invoke(
        cli, ["train", str(split_dir), "-o", str(out), *TINY, "--max-steps", "1", "--overwrite"]
    )
    assert replaced.exit_code == 0, replaced.output
    assert "--overwrite: discarding the interrupted run saved in" in replaced.stderr
    assert "stopped at epoch 3, step 41" in replaced.stderr
    assert not (out / "trainer_state").exists()


def test_a_folder_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    result = CliRunner().invoke(cli, ["info", "-m", str(tmp_path / "notes")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'notes'} is not a grutext checkpoint (no config.json)" in result.output


@pytest.mark.parametrize("target", ["/bin/ls", "model.safetensors"])
def test_predict_refuses_binary_input_unless_asked(trained: Path, target: str) -> None:
    path = target if target.startswith("/") else str(trained / target)
    refused = CliRunner().invoke(cli, ["predict", "-m", str(trained), path])
    assert refused.exit_code == 1 and refused.stdout == ""
    assert "holds a NUL byte" in refused.output and "--binary-ok" in refused.output
    forced = CliRunner().invoke(cli, ["predict", "-m", str(trained), path, "--binary-ok"])
    assert forced.exit_code == 0 and forced.stdout.count("\n") >= 1


def test_offline_hub_id_fails_in_about_two_seconds(tmp_path: Path) -> None:
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["train", "stanfordnlp/imdb", "-o", str(tmp_path / "m")])
    assert time.perf_counter() - start < 5
    assert result.exit_code == 1
    assert "no file or folder 'stanfordnlp/imdb' here" in result.output
    assert "no hub dataset by that name in the local cache" in result.output


def test_hub_probe_without_offline_flag_is_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HF_HUB_OFFLINE, no network: the reachability probe answers instead of ~23 s of retries."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from grutext.readers import _hub_reachable

    start = time.perf_counter()
    assert not _hub_reachable()
    assert time.perf_counter() - start < 2.5


@pytest.mark.parametrize(
    "output",
    [lambda tmp: tmp / "afile" / "model", lambda tmp: Path("/proc/grutext-cannot-write/model")],
    ids=["parent is a file", "unwritable parent"],
)
def test_unwritable_output_fails_before_training(
    split_dir: Path, tmp_path: Path, output: Callable[[Path], Path]
) -> None:
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(cli, ["train", str(split_dir), "-o", str(output(tmp_path)), *TINY])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot write to") and "choose another --output" in result.output


# ------------------------------------------------------------------------------------------ checkpoints


def _damage_cases() -> list[tuple[str, Callable[[Path], None], str]]:
    def edit(section: str | None, change: dict[str, object]) -> Callable[[Path], None]:
        def apply(path: Path) -> None:
            config = json.loads((path / "config.json").read_text())
            (config[section] if section else config).update(change)
            (path / "config.json").write_text(json.dumps(config))

        return apply

    return [
        ("missing weights", lambda p: (p / "model.safetensors").unlink(), "missing model.safetensors"),
        ("truncated weights", lambda p: (p / "model.safetensors").write_bytes(b"\x10\x00"), "not a valid safetensors"),
        ("tampered sizes", edit("model", {"embed_dim": 17}), "does not match config.json"),
        ("huge sizes", edit("model", {"hidden_size": 10**7}), "hidden_size must be an integer"),
        ("future format", edit(None, {"format_version": 3}), "newer than this grutext reads"),
        ("invalid config", lambda p: (p / "config.json").write_text("[]"), "must hold a JSON object"),
    ]


@pytest.mark.parametrize(("name", "damage", "message"), _damage_cases(), ids=[c[0] for c in _damage_cases()])
@pytest.mark.parametrize("command", ["predict", "predict-onnx", "evaluate", "info"])
def test_damaged_checkpoint(
    trained: Path,
    split_dir: Path,
    tmp_path: Path,
    command: str,
    name: str,
    damage: Callable[[Path], None],
    message: str,
) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained, ckpt)
    damage(ckpt)
    before = snapshot(ckpt)
    args = {
        "predict": ["predict", "-m", str(ckpt), "--engine", "torch"],
        "predict-onnx": ["predict", "-m", str(ckpt), "--engine", "onnx"],
        "evaluate": ["evaluate", "-m", str(ckpt), str(split_dir), "--engine", "torch"],
        "info": ["info", "-m", str(ckpt)],
    }[command]
    result = CliRunner().invoke(cli, args, input="text\n")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    if command == "predict-onnx":  # the ONNX engine reads the same files, or refuses a graph they no longer match
        assert message in result.output or "model.onnx was not exported from this checkpoint" in result.output
    else:
        assert message in result.output
    assert snapshot(ckpt) == before


# ------------------------------------------------------------------------------------------ pickles


class _Plant:
    """Unpickling this runs code that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickles_are_never_executed(trained: Path, split_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Plant(marker))
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained, ckpt)
    (ckpt / "pytorch_model.bin").write_bytes(payload)  # a classic pickle next to the real files: ignored
    (ckpt / "optimizer.pt").write_bytes(payload)
    ok = CliRunner().invoke(cli, ["predict", "-m", str(ckpt)], input="superb\n")
    assert ok.exit_code == 0 and ok.stdout == "pos\n"
    (ckpt / "model.safetensors").write_bytes(payload)  # the weights file itself replaced by a pickle
    bad = CliRunner().invoke(cli, ["predict", "-m", str(ckpt)], input="superb\n")
    assert bad.exit_code == 1 and "not a valid safetensors file" in bad.output
    # A resumable state whose optimizer file is a pickle is refused too.
    cut = tmp_path / "cut"
    shutil.copytree(trained, cut)
    (cut / "trainer_state").mkdir()
    (cut / "trainer_state" / "state.json").write_text(json.dumps({"loop": {}, "optimizer": {}, "scheduler": {}}))
    for name in ("model", "best", "optimizer", "rng"):
        (cut / "trainer_state" / f"{name}.safetensors").write_bytes(payload)
    resumed = CliRunner().invoke(cli, ["train", str(split_dir), "-o", str(cut), "--resume"])
    assert resumed.exit_code == 1 and "cannot be read" in resumed.output
    assert not marker.exists()


def test_label_names_never_become_paths(tmp_path: Path) -> None:
    rows = [{"text": f"word{i % 3} text", "label": "../../escape" if i % 2 else "/etc/passwd"} for i in range(40)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "m"
    result = CliRunner().invoke(cli, ["train", str(path), "-o", str(out), *TINY, "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "m"]
    assert json.loads((out / "labels.json").read_text()) == ["../../escape", "/etc/passwd"]


def test_ten_megabyte_line(trained: Path, tmp_path: Path) -> None:
    line = "superb " * 1_500_000  # ~10 MB
    result = CliRunner().invoke(cli, ["predict", "-m", str(trained)], input=line + "\nawful\n")
    assert result.exit_code == 0 and result.stdout == "pos\nneg\n"
    data = write_jsonl(tmp_path / "d.jsonl", [*GOOD, {"text": line, "label": "pos"}])
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(data.read_bytes()))
    trained_big = CliRunner().invoke(cli, ["train", str(gz), "-o", str(tmp_path / "m"), *TINY, "--max-steps", "2"])
    assert trained_big.exit_code == 0, trained_big.output
