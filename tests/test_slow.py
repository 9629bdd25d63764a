"""Slow tests on real data from the benchmark folder GRUTEXT_DATA (`make test-slow DATA=DIR`); skipped without it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from grutext.cli import cli

DATA = Path(os.environ["GRUTEXT_DATA"]) if os.environ.get("GRUTEXT_DATA") else None

pytestmark = pytest.mark.slow


def need(name: str) -> Path:
    if DATA is None:
        pytest.skip("GRUTEXT_DATA is not set (make test-slow DATA=DIR)")
    folder = DATA / name
    if not (folder / "train.jsonl").exists():
        pytest.skip(f"{folder} is not here")
    return folder


def test_sms_spam_defaults(tmp_path: Path) -> None:
    folder = need("sms_spam")
    out = tmp_path / "spam"
    result = CliRunner().invoke(cli, ["train", str(folder), "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["test"]["accuracy"] >= 0.97
    assert metrics["test"]["macro_f1"] >= 0.93
    evaluated = CliRunner().invoke(cli, ["evaluate", "-m", str(out), str(folder), "--json"])
    assert json.loads(evaluated.stdout)["accuracy"] == metrics["test"]["accuracy"]
    spam = CliRunner().invoke(
        cli,
        ["predict", "-m", str(out)],
        input="WINNER!! You have won a £1000 prize. Call 09061701461 to claim now\nok see you at home later\n",
    )
    assert spam.stdout.splitlines() == ["spam", "ham"]
