"""Multi-label end to end, thresholds, class weights, and multi-label metrics against hand-worked values."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from grutext.cli import cli
from grutext.config import TrainConfig
from grutext.data import load_labelled, training_splits
from grutext.decision import Decision
from grutext.metrics import multilabel_metrics, tune_decision
from grutext.task import make_task
from tests.conftest import TINY, write_jsonl

TOPICS = {
    "sport": ["goal", "match", "striker"],
    "money": ["shares", "profit", "bank"],
    "tech": ["chip", "phone", "app"],
}
FILLER = ["the", "a", "today", "news", "said", "new", "big"]


def multilabel_rows(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topics = sorted(rng.sample(sorted(TOPICS), rng.choice([1, 1, 2])))
        words = [rng.choice(TOPICS[t]) for t in topics] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": topics})
    return rows


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ml")
    write_jsonl(root / "train.jsonl", multilabel_rows(300, 1))
    write_jsonl(root / "validation.jsonl", multilabel_rows(60, 2))
    write_jsonl(root / "test.jsonl", multilabel_rows(60, 3))
    return root


@pytest.fixture(scope="module")
def ml_model(ml_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mlm") / "m"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(ml_data),
            "-o",
            str(out),
            *TINY,
            "--epochs",
            "12",
            "--patience",
            "12",
            "--thresholds",
            "per-label",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_multilabel_trains_and_records_thresholds(ml_model: Path) -> None:
    config = json.loads((ml_model / "config.json").read_text())
    assert config["shape"]["multi_label"] is True and config["data"]["label_column"] == "labels"
    decision = config["decision"]
    assert set(decision["per_label"]) == {"money", "sport", "tech"} and decision["at_least_one"] is True
    assert all(0 < t < 1 for t in decision["per_label"].values())
    metrics = json.loads((ml_model / "metrics.json").read_text())
    assert metrics["test"]["micro_f1"] > 0.9


def test_multilabel_predict_formats_and_threshold_override(ml_model: Path) -> None:
    text = "today striker the bank news\nnew phone said\n"
    out = CliRunner().invoke(cli, ["predict", "-m", str(ml_model)], input=text)
    assert out.exit_code == 0, out.output
    first, second = out.stdout.splitlines()
    assert set(first.split(",")) == {"money", "sport"} and second == "tech"
    records = [
        json.loads(x)
        for x in CliRunner()
        .invoke(cli, ["predict", "-m", str(ml_model), "--format", "jsonl"], input=text)
        .stdout.splitlines()
    ]
    assert {x["label"] for x in records[0]["labels"]} == {"money", "sport"}
    assert set(records[0]["probs"]) == {"money", "sport", "tech"}
    # A threshold below every label's probability chooses every label (calibration may make some tiny).
    phone = json.loads(
        CliRunner().invoke(cli, ["predict", "-m", str(ml_model), "--format", "jsonl"], input="phone\n").stdout
    )
    lowest = min(phone["probs"].values())
    assert lowest > 0
    below = f"{lowest / 2:.3e}"
    every = CliRunner().invoke(cli, ["predict", "-m", str(ml_model), "--threshold", below], input="phone\n")
    assert sorted(every.stdout.strip().split(",")) == ["money", "sport", "tech"]
    refused = CliRunner().invoke(cli, ["predict", "-m", str(ml_model), "--min-score", "0.9"], input="phone\n")
    assert refused.exit_code == 2 and "--min-score is for single-label models" in refused.stderr
    assert "use --threshold" in refused.stderr
    tsv = CliRunner().invoke(cli, ["predict", "-m", str(ml_model), "--format", "tsv"], input="phone\n").stdout
    assert tsv.split("\t")[0] == "tech" and 0.5 < float(tsv.split("\t")[1]) <= 1
    # a blank line keeps no label, even at a threshold every label passes
    blank = CliRunner().invoke(
        cli, ["predict", "-m", str(ml_model), "--threshold", below, "--format", "jsonl"], input=" \n"
    )
    assert json.loads(blank.stdout)["labels"] == [] and json.loads(blank.stdout)["blank"] is True


def test_multilabel_evaluate_json(ml_model: Path, ml_data: Path) -> None:
    out = CliRunner().invoke(cli, ["evaluate", "-m", str(ml_model), str(ml_data), "--json"])
    assert out.exit_code == 0, out.output
    metrics = json.loads(out.stdout)
    for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss", "per_class", "n"):
        assert key in metrics
    assert metrics["micro_f1"] > 0.9
    tables = CliRunner().invoke(cli, ["evaluate", "-m", str(ml_model), str(ml_data)])
    assert "micro-F1" in tables.stderr and "Hamming loss" in tables.stderr


def test_label_sep_turns_on_multilabel(tmp_path: Path) -> None:
    rows = [{"text": r["text"], "tags": "|".join(r["labels"])} for r in multilabel_rows(20, 4)]  # type: ignore[arg-type]
    data = load_labelled(str(write_jsonl(tmp_path / "a.jsonl", rows)), label_sep="|")  # type: ignore[arg-type]
    assert data.multi_label and data.label_column == "tags"
    assert all(1 <= len(r) <= 2 for r in data.splits["train"].labels)


def test_multilabel_metrics_by_hand() -> None:
    # 3 texts, labels a b c. true: {a,b} {b} {c}; predicted: {a} {b,c} {c}
    y = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    p = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    m = multilabel_metrics(y, p, ["a", "b", "c"])
    # tp=3 (a, b, c) fp=1 (row 2: c) fn=1 (row 1: b) -> micro P = R = F1 = 3/4
    assert m["micro_f1"] == pytest.approx(0.75)
    # a: P1 R1 F1 1; b: P1 R.5 F1 2/3; c: P.5 R1 F1 2/3
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # samples: 2*1/(2+1)=2/3, 2*1/(1+2)=2/3, 1 -> mean 7/9
    assert m["samples_f1"] == pytest.approx(7 / 9)
    assert m["subset_accuracy"] == pytest.approx(1 / 3)
    assert m["hamming_loss"] == pytest.approx(2 / 9)
    assert m["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}


def test_threshold_tuning_and_at_least_one() -> None:
    # Label a separates above 0.4, label b below 0.3: no single threshold gets both right.
    probs = torch.tensor([[0.9, 0.3], [0.4, 0.35], [0.6, 0.05]])
    truth = torch.tensor([[1, 1], [0, 1], [1, 0]])
    per_label = tune_decision(probs, truth, ["a", "b"], "micro_f1", per_label=True, at_least_one=True)
    assert per_label.apply(probs).tolist() == [[True, True], [False, True], [True, False]]
    assert 0.4 <= per_label.thresholds[0] < 0.6 and 0.05 < per_label.thresholds[1] <= 0.3
    single = tune_decision(probs, truth, ["a", "b"], "micro_f1", per_label=False, at_least_one=True)
    assert len(set(single.thresholds)) == 1 and single.apply(probs).tolist() != truth.bool().tolist()
    assert Decision((0.99, 0.99), at_least_one=False).apply(probs).sum() == 0
    assert Decision((0.99, 0.99), at_least_one=True).apply(probs).sum(1).tolist() == [1, 1, 1]


def test_class_weights_change_the_loss_as_specified(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": "rare" if i % 5 == 0 else "common"} for i in range(100)]
    data = training_splits(load_labelled(str(write_jsonl(tmp_path / "a.jsonl", rows))), 0.1, 0)  # type: ignore[arg-type]
    labels = data.label_names()
    balanced = make_task(data, labels, TrainConfig(class_weight="balanced"))
    n, common, rare = 90, 72, 18
    assert balanced.weight is not None
    assert balanced.weight.tolist() == pytest.approx([n / (2 * common), n / (2 * rare)])
    assert balanced.metric == "macro_f1"  # 4:1 imbalance
    weights_file = tmp_path / "w.json"
    weights_file.write_text('{"rare": 3.0}')
    from_file = make_task(data, labels, TrainConfig(class_weight=str(weights_file)))
    logits, target = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([1, 1])
    per_row = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert float(from_file.loss(logits, target)) == pytest.approx(float(per_row.mean()))  # all rows "rare": same
    mixed = torch.tensor([0, 1])
    per_row = torch.nn.functional.cross_entropy(logits, mixed, reduction="none")
    expected = float((per_row[0] * 1.0 + per_row[1] * 3.0) / 4.0)
    assert float(from_file.loss(logits, mixed)) == pytest.approx(expected)
    none = make_task(data, labels, TrainConfig())
    assert none.weight is None and float(none.loss(logits, mixed)) == pytest.approx(float(per_row.mean()))


def test_label_smoothing_weights_each_row_by_its_own_class() -> None:
    """With smoothing, a row's loss is scaled by its own class's weight only: a heavy class must not pull the
    other classes' rows towards itself (torch's weighted smoothing does, and cost sms_spam's spam precision)."""
    from grutext.head import make_head

    head = make_head(["common", "rare"], False)
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.0], [1.0, 0.2]], requires_grad=True)
    target = torch.tensor([0, 1, 0])
    plain = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1, reduction="none")
    for rare_weight in (1.0, 4.0, 20.0):
        w = torch.tensor([1.0, rare_weight])
        rows = head.loss(logits, target, w, smoothing=0.1, reduction="none")
        torch.testing.assert_close(rows, plain * w[target])  # the common rows' loss ignores the rare weight
        expected = (plain * w[target]).sum() / w[target].sum()
        torch.testing.assert_close(head.loss(logits, target, w, smoothing=0.1), expected)
        torch.testing.assert_close(
            head.loss(logits, target, w, smoothing=0.1, reduction="sum"), (plain * w[target]).sum()
        )
    # without smoothing it is torch's weighted cross-entropy, unchanged
    w = torch.tensor([1.0, 4.0])
    torch.testing.assert_close(
        head.loss(logits, target, w), torch.nn.functional.cross_entropy(logits, target, weight=w)
    )


def test_multilabel_positive_weights(tmp_path: Path) -> None:
    data = training_splits(load_labelled(str(write_jsonl(tmp_path / "a.jsonl", multilabel_rows(100, 5)))), 0.1, 0)
    labels = data.label_names()
    task = make_task(data, labels, TrainConfig(class_weight="balanced"))
    assert task.head.multi_label and task.metric == "macro_f1" and task.weight is not None
    positives = torch.tensor([sum(label in row for row in data.splits["train"].labels) for label in labels])
    negatives = len(data.splits["train"].labels) - positives
    assert task.weight.tolist() == pytest.approx((negatives / positives).clamp(1, 100).tolist())


def test_multilabel_outputs_start_at_each_labels_frequency(ml_data: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    data = training_splits(load_labelled(str(ml_data)), 0.1, 0)
    labels = data.label_names()
    task = make_task(data, labels, TrainConfig())
    rows = data.splits["train"].labels
    freq = torch.tensor([sum(label in row for row in rows) / len(rows) for label in labels])
    assert task.prior is not None
    assert task.prior.tolist() == pytest.approx(torch.log(freq / (1 - freq)).tolist())
    out = tmp_path / "m"
    args = ["train", str(ml_data), "-o", str(out), *TINY, "--max-steps", "1", "--lr", "1e-6", "--bigrams", "50"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    weights = load_file(str(out / "model.safetensors"))
    for head in ("classifier", "bigram_classifier"):  # the bigram head starts there too
        assert weights[f"{head}.bias"].tolist() == pytest.approx(task.prior.tolist(), abs=1e-3)  # one tiny step
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["lr"] == 1e-6 and config["train"]["resolved_lr"] == 1e-6


def test_default_learning_rate_depends_on_the_task() -> None:
    assert TrainConfig().resolved_lr(multi_label=False) == 4e-3
    assert TrainConfig().resolved_lr(multi_label=True) == 8e-3
    assert TrainConfig(lr=0.05).resolved_lr(multi_label=True) == 0.05
