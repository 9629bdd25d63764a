"""Tiny, offline data and one shared trained model. Nothing here writes outside tmp_path."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from grutext.config import ModelConfig

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = ["great", "wonderful", "superb", "moving", "delightful", "brilliant", "charming", "excellent"]
NEGATIVE = ["awful", "boring", "dull", "terrible", "tedious", "clumsy", "bland", "dreadful"]
FILLER = ["the", "film", "was", "really", "and", "a", "plot", "story", "acting", "quite", "with", "its", "cast"]
CN_POSITIVE = ["很好", "满意", "推荐", "干净", "舒服", "漂亮"]
CN_NEGATIVE = ["很差", "失望", "难吃", "肮脏", "吵闹", "糟糕"]
CN_FILLER = ["酒店", "房间", "服务", "早餐", "位置", "这个", "我们", "觉得"]

# Small but learnable settings, so a training run takes seconds.
TINY = [
    "--embed-dim",
    "16",
    "--hidden-size",
    "16",
    "--vocab-size",
    "200",
    "--epochs",
    "3",
    "--batch-size",
    "16",
    "--lr",
    "0.01",
]


def sentiment_rows(n: int, seed: int = 0, chinese: bool = False) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pos, neg, filler = (CN_POSITIVE, CN_NEGATIVE, CN_FILLER) if chinese else (POSITIVE, NEGATIVE, FILLER)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [*rng.sample(filler, 4), rng.choice(pos if label == "pos" else neg)]
        rng.shuffle(words)
        rows.append({"text": ("" if chinese else " ").join(words), "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with train/validation/test jsonl files of a learnable two-class task."""
    root = tmp_path_factory.mktemp("sentiment")
    write_jsonl(root / "train.jsonl", sentiment_rows(240, seed=1))
    write_jsonl(root / "validation.jsonl", sentiment_rows(40, seed=2))
    write_jsonl(root / "test.jsonl", sentiment_rows(60, seed=3))
    return root


@pytest.fixture(scope="session")
def trained(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One checkpoint trained through the CLI, shared by the evaluate/predict/info tests (read-only)."""
    from click.testing import CliRunner

    from grutext.cli import cli

    out = tmp_path_factory.mktemp("models") / "tiny"
    result = CliRunner().invoke(
        cli, ["train", str(split_dir), "--output", str(out), *TINY, "--epochs", "10", "--patience", "10"]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def trained_chars(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `trained`, with the bigram head reading character 2-4-grams (read-only)."""
    from click.testing import CliRunner

    from grutext.cli import cli

    out = tmp_path_factory.mktemp("models") / "chars"
    args = ["train", str(split_dir), "--output", str(out), *TINY, "--epochs", "10", "--char-ngrams", "2-4"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def exported_model(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared checkpoint with its model.onnx (read-only)."""
    import shutil

    from grutext.artifacts import read_meta
    from grutext.onnx_export import export

    copy = tmp_path_factory.mktemp("exported") / "tiny"
    shutil.copytree(trained, copy)
    export(read_meta(copy))
    return copy


@pytest.fixture(params=["torch", "onnx"])
def predict_args(request: pytest.FixtureRequest, trained: Path, exported_model: Path) -> list[str]:
    """`-m MODEL --engine E` for each engine, so predict's tests run against both."""
    engine = str(request.param)
    return ["-m", str(exported_model if engine == "onnx" else trained), "--engine", engine]


def settled(cfg: ModelConfig, multi_label: bool = False) -> ModelConfig:
    """A model config with its data-dependent defaults settled as a run settles them (ModelConfig.resolved_for):
    the bigram head's default, and character n-grams only where the test asks for them."""
    return cfg.resolved_for(multi_label, "word" if cfg.char_ngrams not in (None, "0") else "bpe")
