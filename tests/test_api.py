"""The Python API mirrors the command line: grutext.train, grutext.load, model.predict, model.evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import grutext
from grutext.cli import cli
from grutext.errors import ConfigError


def test_train_takes_the_command_lines_options_as_keywords(split_dir: Path, tmp_path: Path) -> None:
    events: list[object] = []
    model = grutext.train(
        split_dir, tmp_path / "m", epochs=2, embed_dim=16, hidden_size=16, vocab_size=200, tokenizer="word",
        lr=0.01, on_event=events.append,
    )  # fmt: skip
    assert model.labels == ["neg", "pos"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"]["embed_dim"] == 16 and config["train"]["epochs"] == 2
    assert config["tokenizer"]["kind"] == "word"
    assert any(type(e).__name__ == "Finished" for e in events)
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) epochz; known: .*epochs"):
        grutext.train(split_dir, tmp_path / "n", epochz=2)


def test_load_and_predict(trained: Path) -> None:
    model = grutext.load(trained)
    preds = model.predict(["wonderful superb film", "awful and dull"])
    assert [p.label for p in preds] == ["pos", "neg"]
    assert model.predict_proba(["superb"]).shape == (1, 2)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_bad_inputs_raise_the_librarys_errors(trained: Path, exported_model: Path, engine: str) -> None:
    """Not a traceback from deep inside (`object of type 'int' has no len()`): an InputError (a DataError, and
    a TypeError as Python expects) naming the item, from either engine and every entry point."""
    from grutext.engine import load_engine
    from grutext.errors import DataError, InputError

    model = grutext.load(trained) if engine == "torch" else load_engine(exported_model, "onnx")
    for call in (model.predict, model.predict_proba, lambda texts: list(model.stream(texts))):
        with pytest.raises(InputError, match=r"texts\[1\] is int 2, not a string"):
            call(["fine", 2])
        with pytest.raises(DataError, match=r"texts\[0\] is NoneType None"):
            call([None])
        with pytest.raises(TypeError, match="not one string; wrap a single text in a list"):
            call("one string")
    with pytest.raises(InputError, match="not int"):
        model.predict(5)
    assert model.predict([]) == [] and len(model.predict_proba([])) == 0
    with pytest.raises(ConfigError, match="threshold must lie strictly between 0 and 1"):
        grutext.load(trained, threshold=1.5)
    with pytest.raises(ConfigError, match="device must be one of auto, cpu, cuda, mps, got 'gpu'"):
        grutext.load(trained, device="gpu")


def test_evaluate_matches_the_command_line(trained: Path, split_dir: Path) -> None:
    model = grutext.load(trained)
    ours = model.evaluate(split_dir)
    theirs = json.loads(CliRunner().invoke(cli, ["evaluate", "-m", str(trained), str(split_dir), "--json"]).stdout)
    assert ours == theirs and ours["split"] == "test"
    assert model.evaluate(split_dir, "validation")["n"] == 40


def test_info_matches_the_command_line(trained: Path) -> None:
    theirs = json.loads(CliRunner().invoke(cli, ["info", "-m", str(trained), "--json"]).stdout)
    assert grutext.load(trained).info() == theirs
