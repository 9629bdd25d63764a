"""grutext audit: planted label errors are found by k-fold confident learning, through the command line and the
Python API, single- and multi-label."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import grutext
from grutext.auditing import fold_of_rows
from grutext.cli import cli
from grutext.errors import ConfigError
from tests.conftest import sentiment_rows, write_jsonl
from tests.test_multilabel import multilabel_rows

SETTINGS = {"embed_dim": 16, "hidden_size": 16, "vocab_size": 200, "epochs": 8, "batch_size": 16, "lr": 0.01}


def planted(n: int, share: float, seed: int) -> tuple[list[dict[str, object]], set[int]]:
    """Sentiment rows with `share` of their labels flipped; the flipped rows' numbers, counted from 1."""
    rows = sentiment_rows(n, seed=seed)
    flipped = set(random.Random(seed).sample(range(n), int(share * n)))
    for i in flipped:
        rows[i]["label"] = "neg" if rows[i]["label"] == "pos" else "pos"
    return rows, {i + 1 for i in flipped}  # type: ignore[misc]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[int]]:
    rows, flipped = planted(300, 0.1, seed=4)
    return write_jsonl(tmp_path_factory.mktemp("audit") / "train.jsonl", rows), flipped  # type: ignore[arg-type]


def test_audit_finds_planted_label_errors(noisy: tuple[Path, set[int]]) -> None:
    data, flipped = noisy
    settings = [part for k, v in SETTINGS.items() for part in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(cli, ["audit", str(data), "--folds", "3", *settings])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    flagged = {int(line[0]) for line in lines}
    hits = len(flagged & flipped)
    assert hits / len(flagged) >= 0.7 and hits / len(flipped) >= 0.7, (sorted(flagged), sorted(flipped))
    source = [json.loads(x) for x in data.read_text().splitlines()]
    for row, given, suggested, score, text in lines:
        assert source[int(row) - 1]["label"] == given and source[int(row) - 1]["text"] == text
        assert suggested != given and 0 <= float(score) <= 1
    scores = [float(line[3]) for line in lines]
    assert scores == sorted(scores, reverse=True)  # the most suspect first
    assert "fold 3/3" in result.stderr and "flagged" in result.stderr and "pos -> neg" in result.stderr


def test_the_api_and_jsonl_agree(noisy: tuple[Path, set[int]]) -> None:
    data = noisy[0]
    result = grutext.audit(data, folds=3, **SETTINGS)
    out = CliRunner().invoke(
        cli, ["audit", str(data), "--folds", "3", "--format", "jsonl",
              *[part for k, v in SETTINGS.items() for part in ("--set", f"{k}={v}")]],
    )  # fmt: skip
    records = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["row"] for r in records] == [s.row for s in result.suspects]
    assert set(records[0]) == {"row", "text", "label", "suggested", "score"}
    assert result.rows == 300 and result.probs.shape == (300, 2)


def test_multi_label_rows_missing_a_label_are_flagged(tmp_path: Path) -> None:
    rows = multilabel_rows(300, 3)
    rng = random.Random(0)
    broken = set()
    for i in rng.sample(range(len(rows)), 30):
        labels = rows[i]["labels"]
        assert isinstance(labels, list)
        others = sorted({"money", "sport", "tech"} - set(labels))
        rows[i]["labels"] = [others[0]]  # a wrong label instead of the right ones
        broken.add(i + 1)
    data = write_jsonl(tmp_path / "train.jsonl", rows)  # type: ignore[arg-type]
    result = grutext.audit(data, folds=3, **{**SETTINGS, "epochs": 20})  # one sigmoid a label learns slower
    flagged = {s.row for s in result.suspects}
    assert result.multi_label and len(flagged & broken) >= 0.7 * len(broken)
    assert len(flagged & broken) >= 0.8 * len(flagged)
    first = result.suspects[0].record(True)
    assert set(first) == {"row", "text", "labels", "suggested", "score"} and isinstance(first["labels"], list)


def test_folds_hold_each_label_equally_and_repeat_by_seed() -> None:
    labels = [["a"]] * 50 + [["b"]] * 10
    fold = fold_of_rows(labels, 5, seed=1)
    for k in range(5):
        assert sum(1 for f, row in zip(fold, labels, strict=True) if f == k and row == ["b"]) == 2
        assert fold.count(k) == 12
    assert fold == fold_of_rows(labels, 5, seed=1) and fold != fold_of_rows(labels, 5, seed=2)


def test_too_few_rows_and_a_missing_cleanlab_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(20))  # type: ignore[arg-type]
    result = CliRunner().invoke(cli, ["audit", str(data)])
    assert result.exit_code == 1 and "too few to audit in 5 folds" in result.stderr
    monkeypatch.setitem(sys.modules, "cleanlab", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'grutext\[audit\]'"):
        grutext.audit(data)
