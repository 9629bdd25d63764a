"""Everything grutext writes gets the modes the user's umask gives, so a checkpoint can be served by another
account or shared: tempfile's private directories and safetensors' private files must not leak through."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from grutext.cli import cli
from tests.conftest import TINY

UMASK = 0o027  # not the usual 0022: a mode that merely happens to be the default does not pass by luck


@pytest.fixture
def umask() -> Iterator[int]:
    previous = os.umask(UMASK)
    try:
        yield UMASK
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, str]:
    """Every path under root (and root itself) -> its permission bits in octal."""
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = oct(stat.S_IMODE(path.stat().st_mode))
    return found


def expect(root: Path, mask: int) -> dict[str, str]:
    """What every path under root should have: 0777 or 0666 less the umask."""
    wanted = {".": oct(0o777 & ~mask)}
    for path in root.rglob("*"):
        wanted[str(path.relative_to(root))] = oct((0o777 if path.is_dir() else 0o666) & ~mask)
    return wanted


def run(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output


def test_a_trained_checkpoint_follows_the_umask(split_dir: Path, tmp_path: Path, umask: int) -> None:
    out = tmp_path / "m"
    run("train", str(split_dir), "-o", str(out), *TINY, "--epochs", "1")
    assert "model.safetensors" in modes(out) and modes(out) == expect(out, umask)
    # --overwrite replaces it with another that does too
    run("train", str(split_dir), "-o", str(out), *TINY, "--epochs", "1", "--overwrite")
    assert modes(out) == expect(out, umask)


def test_an_interrupted_runs_state_follows_the_umask(split_dir: Path, tmp_path: Path, umask: int) -> None:
    from grutext.checkpoint import TrainerState, load, save, write_trainer_state

    trained = tmp_path / "m"
    run("train", str(split_dir), "-o", str(trained), *TINY, "--epochs", "1")
    model = load(trained)
    weights = model.model.state_dict()
    state = TrainerState({"epoch": 1, "step": 1}, weights, weights, {"state": {}, "param_groups": []}, {}, {})
    out = tmp_path / "resumable"
    save(
        out,
        model=model.model,
        tokenizer=model.tokenizer,
        tokenizer_config=model.tokenizer_config,
        labels=model.labels,
        sections={},
        metrics={},
        overwrite=False,
        extra=lambda root: write_trainer_state(root, state),
        with_onnx=False,
    )
    assert (out / "trainer_state" / "model.safetensors").is_file()
    assert modes(out) == expect(out, umask)


def test_export_and_report_and_explain_follow_the_umask(trained: Path, tmp_path: Path, umask: int) -> None:
    import shutil

    model = tmp_path / "copy"
    shutil.copytree(trained, model)
    os.chmod(model, 0o750)
    run("export", "-m", str(model), "-o", str(tmp_path / "deploy" / "m.onnx"))
    assert modes(tmp_path / "deploy") == expect(tmp_path / "deploy", umask)
    assert oct(stat.S_IMODE((model / "model.onnx").stat().st_mode)) == oct(0o666 & ~umask)
    run("report", "-m", str(trained), "-o", str(tmp_path / "report"))
    assert modes(tmp_path / "report") == expect(tmp_path / "report", umask)
    page = tmp_path / "explained.html"
    result = CliRunner().invoke(cli, ["explain", "-m", str(trained), "--html", str(page)], input="great film\n")
    assert result.exit_code == 0, result.output
    assert oct(stat.S_IMODE(page.stat().st_mode)) == oct(0o666 & ~umask)


def test_tune_keeps_a_checkpoint_that_follows_the_umask(split_dir: Path, tmp_path: Path, umask: int) -> None:
    out = tmp_path / "tuned"
    fixed = ["--set", "embed_dim=16", "--set", "hidden_size=16", "--set", "vocab_size=200", "--set", "epochs=1"]
    run("tune", str(split_dir), "-o", str(out), "--trials", "1", *fixed)
    assert (out / "tuning.json").is_file()
    assert modes(out) == expect(out, umask)


def test_a_pretrained_language_model_follows_the_umask(tmp_path: Path, umask: int) -> None:
    corpus = tmp_path / "texts.txt"
    corpus.write_text("".join(f"the film was really good number {i % 7}\n" for i in range(200)), encoding="utf-8")
    out = tmp_path / "lm"
    run("pretrain", str(corpus), "-o", str(out), "--embed-dim", "8", "--hidden-size", "8", "--epochs", "1")
    assert "model.safetensors" in modes(out) and modes(out) == expect(out, umask)
