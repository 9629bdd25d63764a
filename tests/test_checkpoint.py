"""Checkpoints: identical logits after a round trip, atomic writes, and clean errors for damage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import grutext
from grutext.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load, save, write_atomically
from grutext.config import ModelConfig
from grutext.errors import CheckpointError


@pytest.fixture
def ckpt(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ckpt"
    shutil.copytree(trained, copy)
    return copy


def sample_inputs(cfg: ModelConfig) -> tuple[torch.Tensor, ...]:
    """Two texts as a model reads them: ids and lengths, then n-gram rows where the model reads them."""
    inputs = (torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]]), torch.tensor([4, 2]))
    if cfg.char_span is not None:  # the default: the bigram head reads n-gram rows too
        inputs += (torch.tensor([[300, 301, 302], [303, 0, 0]]), torch.tensor([[1.0, 2.0, 1.0], [1.0, 0.0, 0.0]]))
    return inputs


def test_round_trip_gives_identical_logits(ckpt: Path, tmp_path: Path) -> None:
    first = load(ckpt)
    again = tmp_path / "again"
    save(
        again,
        model=first.model,
        tokenizer=first.tokenizer,
        tokenizer_config=first.tokenizer_config,
        labels=first.labels,
        sections={},
        metrics=first.metrics,
        overwrite=False,
    )
    second = load(again)
    inputs = sample_inputs(first.model_config)
    with torch.no_grad():
        assert torch.equal(first.model(*inputs), second.model(*inputs))
    assert second.tokenizer.to_str() == first.tokenizer.to_str()


def test_same_weights_make_the_same_file(ckpt: Path, tmp_path: Path) -> None:
    """Byte for byte, from process to process: safetensors writes its header's metadata in a hash-map order
    that each process seeds afresh, so two metadata keys once made the same weights different files."""
    script = (
        "import sys; from pathlib import Path; from grutext.checkpoint import load, save; c = load(sys.argv[1]); "
        "save(Path(sys.argv[2]), model=c.model, tokenizer=c.tokenizer, tokenizer_config=c.tokenizer_config, "
        "labels=c.labels, sections={}, metrics=c.metrics, overwrite=False, with_onnx=False)"
    )
    weights = set()
    for k in range(4):
        out = tmp_path / f"copy{k}"
        subprocess.run([sys.executable, "-c", script, str(ckpt), str(out)], check=True)
        weights.add((out / WEIGHTS_FILE).read_bytes())
    assert len(weights) == 1


def test_checkpoint_is_pickle_free(ckpt: Path) -> None:
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == ["config.json", "labels.json", "metrics.json", "model.onnx", "model.safetensors", "tokenizer.json"]
    for name in names:
        if name.endswith(".json"):
            json.loads((ckpt / name).read_text(encoding="utf-8"))
    raw = (ckpt / WEIGHTS_FILE).read_bytes()
    assert raw[:1] != b"\x80" and raw[:2] != b"PK"  # neither a pickle (protocol 2+) nor torch.save's zip
    size = int.from_bytes(raw[:8], "little")  # safetensors: an 8-byte header length, then a JSON header
    header = json.loads(raw[8 : 8 + size])
    assert set(header) - {"__metadata__"} == set(grutext.load(str(ckpt)).checkpoint.model.state_dict())


def test_python_api(ckpt: Path) -> None:
    clf = grutext.load(str(ckpt))
    preds = clf.predict(["wonderful superb film", "awful and dull"])
    assert [p.label for p in preds] == ["pos", "neg"]
    assert abs(sum(preds[0].probs.values()) - 1) < 1e-5 and preds[0].score == max(preds[0].probs.values())
    with pytest.raises(TypeError, match="list of strings"):
        clf.predict("one string")  # type: ignore[arg-type]


def _edit_config(path: Path, change: dict[str, object], section: str | None = "model") -> None:
    config = json.loads((path / CONFIG_FILE).read_text())
    (config[section] if section else config).update(change)
    (path / CONFIG_FILE).write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "tokenizer.json").unlink(), r"incomplete: missing tokenizer.json"),
        (lambda p: (p / WEIGHTS_FILE).write_bytes((p / WEIGHTS_FILE).read_bytes()[:1000]), r"not a valid safetensors"),
        (lambda p: (p / CONFIG_FILE).write_text("{not json"), r"config.json is not valid JSON"),
        (lambda p: _edit_config(p, {"hidden_size": 32}), r"does not match config.json .*is \(48, 16\) not \(96, 16\)"),
        (lambda p: _edit_config(p, {"vocab_size": 10**9}, "shape"), r"vocab_size must be an integer from 2 to"),
        (lambda p: _edit_config(p, {"format_version": 99}, None), r"format_version 99, newer than .*upgrade grutext"),
        (lambda p: _edit_config(p, {"surprise": 1}), r"unknown keys surprise"),
        (lambda p: (p / "labels.json").write_text('["neg", "pos", "extra"]'), r"lists 3 labels but .*num_labels=2"),
        (lambda p: (p / "tokenizer.json").write_text('{"model": 1}'), r"tokenizer.json is not a valid tokenizer"),
    ],
)
def test_damaged_checkpoints_are_refused_with_a_reason(ckpt: Path, damage: object, message: str) -> None:
    damage(ckpt)  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=message):
        load(ckpt)


def test_failed_write_leaves_the_previous_checkpoint_intact(ckpt: Path) -> None:
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}

    def fail(tmp: Path) -> None:
        (tmp / "config.json").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(ckpt, overwrite=True, fill=fail)
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before
    assert [p.name for p in ckpt.parent.iterdir() if p.name.startswith(".")] == []


def test_overwrite_replaces_and_refusal_keeps(ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match="not empty; pass --overwrite"):
        write_atomically(ckpt, overwrite=False, fill=lambda tmp: None)
    write_atomically(ckpt, overwrite=True, fill=lambda tmp: (tmp / "new.txt").write_text("x"))
    assert [p.name for p in ckpt.iterdir()] == ["new.txt"]


def test_format_1_checkpoints_still_load(ckpt: Path) -> None:
    """Format 1 kept the data's shape inside "model" and named the cells torch/seed."""
    from grutext.config import DataShape

    before = load(ckpt)
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    config["model"].update(config.pop("shape"))
    config["model"]["cell"] = "torch"
    config["format_version"] = 1
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    after = load(ckpt)
    assert after.model_config == before.model_config and after.model_config.cell == "gru"
    assert after.shape == before.shape == DataShape(before.shape.vocab_size, 2, False)
    inputs = sample_inputs(before.model_config)
    with torch.no_grad():
        assert torch.equal(before.model(*inputs), after.model(*inputs))
