"""Answering only when sure: predict --min-score/--fallback through both engines and the API, and evaluate's
coverage and accuracy at each --min-score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import grutext
from grutext.calibration import abstaining, coverage_curve
from grutext.cli import cli
from grutext.errors import ConfigError
from grutext.prediction import check_abstain

TEXTS = "a wonderful superb film\nawful and dull\nfine\n"


def run(args: list[str], text: str = TEXTS) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, input=text)
    return result.exit_code, result.stdout, result.stderr


def test_min_score_gives_the_fallback_below_it_and_keeps_the_rest(predict_args: list[str]) -> None:
    _, plain, _ = run(["predict", *predict_args, "--format", "jsonl"])
    records = [json.loads(x) for x in plain.splitlines()]
    scores = [r["score"] for r in records]
    low, middle = sorted(scores)[:2]
    assert middle - low > 1e-4
    # the two most confident texts stay, the least confident one abstains; the cut between the printed (rounded)
    # scores, not on one of them, which the unrounded score may fall a rounding error below
    cut = (low + middle) / 2
    code, out, _ = run(["predict", *predict_args, "--min-score", str(cut), "--fallback", "review"])
    assert code == 0
    want = [r["label"] if r["score"] >= cut else "review" for r in records]
    assert out.splitlines() == want and want.count("review") == 1
    code, out, _ = run(["predict", *predict_args, "--min-score", "1", "--format", "jsonl"])
    abstained = [json.loads(x) for x in out.splitlines()]
    assert all(r["label"] == "" and r["abstained"] is True for r in abstained)
    assert [r["probs"] for r in abstained] == [r["probs"] for r in records]  # the probabilities stay
    # one line per input line, an empty label where it abstains; tsv keeps the score that was too low
    code, out, _ = run(["predict", *predict_args, "--min-score", "1"])
    assert out == "\n\n\n"
    code, out, _ = run(["predict", *predict_args, "--min-score", "1", "--format", "tsv", "--top-k", "2"])
    assert [line.split("\t") for line in out.splitlines()] == [["", f"{s:.6f}"] for s in scores]
    code, out, _ = run(["predict", *predict_args, "--min-score", "0"])
    assert out.splitlines() == [r["label"] for r in records]


def test_blank_lines_get_no_label_whatever_the_min_score(predict_args: list[str]) -> None:
    # training drops empty texts, so a model's answer for one would be its bias alone
    text = "a wonderful superb film\n\n   \nawful and dull\n"
    _, plain, _ = run(["predict", *predict_args], text)
    lines = plain.split("\n")
    assert len(lines) == 5 and lines[1:3] == ["", ""] and lines[0] and lines[3]
    _, out, _ = run(["predict", *predict_args, "--format", "jsonl"], text)
    records = [json.loads(x) for x in out.splitlines()]
    assert [r.get("blank", False) for r in records] == [False, True, True, False]
    assert all(r["label"] == "" and r["abstained"] is True and len(r["probs"]) == 2 for r in records[1:3])
    _, out, _ = run(["predict", *predict_args, "--min-score", "0", "--fallback", "review"], text)
    assert out.splitlines()[1:3] == ["review", "review"] and out.splitlines()[0] == lines[0]


def test_bad_settings_are_usage_errors(trained: Path) -> None:
    code, _, err = run(["predict", "-m", str(trained), "--fallback", "review"])
    assert code == 2 and "give --min-score too" in err
    code, _, err = run(["predict", "-m", str(trained), "--min-score", "1.5"])
    assert code == 2 and "1.5" in err
    with pytest.raises(ConfigError, match="single-label"):
        check_abstain(0.5, "", multi_label=True)
    with pytest.raises(ConfigError, match="tabs or newlines"):
        check_abstain(0.5, "a\tb", multi_label=False)


def test_the_api_abstains_as_the_command_line_does(trained: Path) -> None:
    model = grutext.load(trained)
    preds = model.predict(["a wonderful superb film", "fine"], min_score=1.0, fallback="?")
    assert [p.label for p in preds] == ["?", "?"] and all(p.abstained for p in preds)
    assert [p.label for p in model.predict(["a wonderful superb film"], min_score=0.0)] == ["pos"]
    with pytest.raises(ConfigError):
        model.predict(["x"], min_score=2)
    blank, text = model.predict([" \t", "a wonderful superb film"])
    assert blank.blank and blank.label == "" and blank.abstained and not text.blank and text.label == "pos"


def test_evaluate_shows_coverage_and_accuracy_at_each_min_score(trained: Path, split_dir: Path) -> None:
    code, out, _ = run(["evaluate", "-m", str(trained), str(split_dir), "--json", "--min-score", "0.77"], "")
    assert code == 0
    metrics = json.loads(out)
    rows = {row["min_score"]: row for row in metrics["abstaining"]}
    assert 0.77 in rows and 0.5 in rows and 0.99 in rows
    assert rows[0.5]["coverage"] == 1.0 and rows[0.5]["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-6)
    coverages = [row["coverage"] for row in metrics["abstaining"]]
    assert coverages == sorted(coverages, reverse=True)
    code, _, err = run(["evaluate", "-m", str(trained), str(split_dir)], "")
    assert code == 0 and "answering only when sure" in err and "ECE" in err
    api = grutext.load(trained).evaluate(split_dir, min_score=0.77)
    assert api["abstaining"] == metrics["abstaining"]


def test_abstaining_and_the_coverage_curve_count_by_hand() -> None:
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.3, 0.7], [0.45, 0.55]])
    target = np.array([0, 1, 1, 0])  # right, wrong, right, wrong
    rows = {r["min_score"]: r for r in abstaining(probs, target, (0.5, 0.7, 0.92, 0.99))}
    assert rows[0.5] == {"min_score": 0.5, "coverage": 1.0, "accuracy": 0.5}
    assert rows[0.7] == {"min_score": 0.7, "coverage": 0.75, "accuracy": pytest.approx(2 / 3, abs=1e-6)}
    assert rows[0.92] == {"min_score": 0.92, "coverage": 0.25, "accuracy": 1.0}
    assert rows[0.99] == {"min_score": 0.99, "coverage": 0.0, "accuracy": None}
    assert coverage_curve(probs, target, points=4) == [(0.25, 1.0), (0.5, 0.5), (0.75, 2 / 3), (1.0, 0.5)]
