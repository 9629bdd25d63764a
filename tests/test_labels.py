"""Labels across formats and splits: one label check for every format, a validation carve that never takes a
label's last training text, and test labels the model lacks counted in the scores rather than fatal."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from grutext.cli import cli
from grutext.data import carve_validation, load_labelled, training_splits
from tests.conftest import TINY, sentiment_rows, write_jsonl


def rare_label_rows(seed: int) -> list[dict[str, object]]:
    """Multi-label rows where 'rare' has a single text, listed after a common label (the carve stratifies by
    a row's first label, so it can take that text away with the common label's share)."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = [
        {"text": f"news item {i} {rng.choice(['goal', 'bank', 'chip'])}", "labels": [rng.choice(["a", "b"])]}
        for i in range(60)
    ]
    rows.append({"text": "the one rare text", "labels": ["a", "rare"]})
    return rows


def test_the_carve_never_takes_a_labels_last_training_text(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "train.jsonl", rare_label_rows(0))
    train = load_labelled(str(source)).splits["train"]
    taken_whole = 0
    for seed in range(40):
        rest, val = carve_validation(train, 0.2, seed)
        assert "rare" in {n for row in rest.labels for n in row}, seed
        assert len(val.texts) > 0
        taken_whole += "the one rare text" in val.texts
    assert taken_whole == 0


def test_validation_labels_train_lacks_are_left_out(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40))
    rows = [*sentiment_rows(10, seed=5), {"text": "so so", "label": "meh"}]
    write_jsonl(tmp_path / "validation.jsonl", rows)
    data = training_splits(load_labelled(str(tmp_path)), 0.1, 0)
    assert data.unseen_in_validation == {"meh": 1}
    assert "so so" not in data.splits["validation"].texts and len(data.splits["validation"].texts) == 10


def test_training_counts_a_test_label_the_model_lacks_and_warns(split_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "d"
    for name in ("train", "validation"):
        (data / f"{name}.jsonl").parent.mkdir(exist_ok=True)
        (data / f"{name}.jsonl").write_text((split_dir / f"{name}.jsonl").read_text())
    test_rows = [json.loads(line) for line in (split_dir / "test.jsonl").read_text().splitlines()]
    test_rows[:3] = [{"text": r["text"], "label": "neutral"} for r in test_rows[:3]]
    write_jsonl(data / "test.jsonl", test_rows)
    out = tmp_path / "m"
    result = CliRunner().invoke(cli, ["train", str(data), "-o", str(out), *TINY, "--json"])
    assert result.exit_code == 0, result.output
    assert "Warning:" in result.stderr and "'neutral' (3 texts)" in result.stderr
    test = json.loads(result.stdout)["test"]
    assert test["unknown_labels"] == {"neutral": 3} and test["n"] == 60
    assert test["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}
    assert test["accuracy"] <= 57 / 60  # the three texts are errors the model cannot avoid
    assert json.loads((out / "labels.json").read_text()) == ["neg", "pos"]

    # evaluate scores the same file the same way, with the same warning, instead of refusing it
    result = CliRunner().invoke(cli, ["evaluate", "-m", str(out), str(data / "test.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unknown_labels"] == {"neutral": 3}
    assert "Warning:" in result.stderr and "'neutral' (3 texts)" in result.stderr


def test_a_multi_label_test_label_the_model_lacks_is_a_miss(tmp_path: Path) -> None:
    rows = rare_label_rows(1)[:60]
    write_jsonl(tmp_path / "d" / "train.jsonl", rows)
    write_jsonl(tmp_path / "d" / "test.jsonl", [{"text": "a new kind", "labels": ["a", "unseen"]}, *rows[:9]])
    out = tmp_path / "m"
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "d"), "-o", str(out), *TINY, "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    test = json.loads(result.stdout)["test"]
    assert test["unknown_labels"] == {"unseen": 1}
    assert test["per_class"]["unseen"]["support"] == 1 and test["per_class"]["unseen"]["recall"] == 0.0
    assert test["micro_recall"] < 1.0
    assert set(test["decision"]["per_label"] or {}) <= {"a", "b"}


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "txt"])
def test_every_format_goes_through_one_label_check(tmp_path: Path, fmt: str, streaming: bool) -> None:
    """CSV and fastText labels are untyped text: '1' beside 'ham', or '0.5' among 0s and 1s, are refused
    there as they are in jsonl."""
    for labels, message in ((["1", "ham"], "mixes label types"), (["0", "1", "0.5"], "label 0.5 is not a class")):
        rows = [{"text": f"text number {i}", "label": labels[i % len(labels)]} for i in range(12)]
        path = tmp_path / f"{labels[-1]}.{fmt}"
        if fmt == "jsonl":  # jsonl writes numbers as numbers, as a user's JSON would
            write_jsonl(path, [{**r, "label": _number(r["label"])} for r in rows])
        elif fmt == "txt":
            path.write_text("".join(f"__label__{r['label']} {r['text']}\n" for r in rows), encoding="utf-8")
        else:
            sep = "," if fmt == "csv" else "\t"
            path.write_text("text" + sep + "label\n" + "".join(f"{r['text']}{sep}{r['label']}\n" for r in rows))
        args = ["train", str(path), "-o", str(tmp_path / "m"), *TINY, *(["--streaming"] if streaming else [])]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert message in result.stderr, result.stderr
        assert not (tmp_path / "m").exists()


def _number(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def test_csv_integer_labels_still_train_and_name_like_jsonl(tmp_path: Path) -> None:
    rows = [{"text": f"text number {i}", "label": str(i % 3)} for i in range(30)]
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    jsonl_path = write_jsonl(tmp_path / "a.jsonl", [{**r, "label": int(r["label"])} for r in rows])
    assert load_labelled(str(csv_path)).label_names() == load_labelled(str(jsonl_path)).label_names() == ["0", "1", "2"]


def test_report_counts_a_label_the_model_lacks_as_evaluate_does(trained: Path, split_dir: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (split_dir / "test.jsonl").read_text().splitlines()]
    rows[0] = {"text": rows[0]["text"], "label": "neutral"}
    data = write_jsonl(tmp_path / "test.jsonl", rows)
    result = CliRunner().invoke(cli, ["report", "-m", str(trained), str(data), "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "'neutral' (1 text)" in result.stderr
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "neutral" in page
