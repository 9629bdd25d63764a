"""Calibration: the temperature's arithmetic against torch, its fit on data whose true temperature is known, the
ECE against a hand count, and a checkpoint's temperature through both engines and from old checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from grutext.calibration import ece, fit_temperature, nll, temper
from grutext.cli import cli
from grutext.engine import load_engine
from grutext.errors import CheckpointError


def test_temper_matches_dividing_the_logits() -> None:
    logits = torch.randn(50, 4, generator=torch.Generator().manual_seed(0)) * 3
    for t in (0.3, 1.0, 2.5):
        want = torch.softmax(logits / t, dim=1).numpy()
        got = temper(torch.softmax(logits, dim=1).numpy(), t, multi_label=False)
        assert np.allclose(got, want, atol=1e-6)
        want_ml = torch.sigmoid(logits / t).numpy()
        got_ml = temper(torch.sigmoid(logits).numpy(), t, multi_label=True)
        assert np.allclose(got_ml, want_ml, atol=1e-5)


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_fit_recovers_the_temperature_labels_were_drawn_at(true_t: float) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20000, 3)) * 2
    truth = torch.softmax(torch.tensor(logits / true_t), dim=1).numpy()
    labels = np.array([rng.choice(3, p=row) for row in truth])
    probs = torch.softmax(torch.tensor(logits), dim=1).numpy()
    fitted = fit_temperature(probs, labels, multi_label=False)
    assert fitted == pytest.approx(true_t, rel=0.05)
    assert ece(temper(probs, fitted, False), labels, False) < ece(probs, labels, False)
    assert nll(temper(probs, fitted, False), labels, False) < nll(probs, labels, False)
    # multi-label: each label a coin drawn at its sigmoid
    coins = (rng.random(logits.shape) < torch.sigmoid(torch.tensor(logits / true_t)).numpy()).astype(np.int64)
    fitted_ml = fit_temperature(torch.sigmoid(torch.tensor(logits)).numpy(), coins, multi_label=True)
    assert fitted_ml == pytest.approx(true_t, rel=0.05)


def test_a_validation_split_it_gets_all_right_does_not_make_it_certain() -> None:
    # Ten rows, all right: the plain NLL would push T to its floor and every probability to 1.
    probs = np.array([[0.8, 0.2]] * 5 + [[0.3, 0.7]] * 5)
    labels = np.array([0] * 5 + [1] * 5)
    fitted = fit_temperature(probs, labels, multi_label=False)
    top = temper(probs, fitted, False).max(axis=1)
    assert 0.85 < top.min() < 0.95  # near Platt's (n + 1) / (n + 2) = 11 / 12


def test_ece_counts_bins_by_hand() -> None:
    # Two bins: 0.9 confident, right 3 of 4 (gap 0.15); 0.6 confident, right 1 of 2 (gap 0.1).
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    labels = np.array([0, 0, 0, 1, 0, 1])
    assert ece(probs, labels, False) == pytest.approx(4 / 6 * 0.15 + 2 / 6 * 0.1)
    assert nll(probs, labels, False) == pytest.approx(-(3 * np.log(0.9) + np.log(0.1) + np.log(0.6) + np.log(0.4)) / 6)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_checkpoint_keeps_its_temperature_and_both_engines_apply_it(
    engine: str, exported_model: Path, tmp_path: Path
) -> None:
    config = json.loads((exported_model / "config.json").read_text())
    section = config["calibration"]
    t = section["temperature"]
    assert 0.05 <= t <= 20 and set(section["validation"]) == {"ece_before", "ece_after", "nll_before", "nll_after"}
    assert section["validation"]["nll_after"] <= section["validation"]["nll_before"]
    texts = ["a great film", "dull and slow", "fine"]
    calibrated = load_engine(exported_model, engine).predict_proba(texts)
    # the same weights without the section (a checkpoint from before calibration): temperature 1
    old = tmp_path / "old"
    old.mkdir()
    for f in exported_model.iterdir():
        if f.is_file():
            (old / f.name).write_bytes(f.read_bytes())
    del config["calibration"]
    (old / "config.json").write_text(json.dumps(config))
    raw = load_engine(old, engine).predict_proba(texts)
    assert np.allclose(temper(raw, t, False), calibrated, atol=1e-5)
    assert (np.argmax(raw, axis=1) == np.argmax(calibrated, axis=1)).all()
    # a temperature out of range is refused on load, not applied
    config["calibration"] = {"temperature": -1}
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"calibration\.temperature"):
        load_engine(old, engine)


def test_evaluate_json_reports_ece_and_nll(trained: Path, split_dir: Path) -> None:
    out = CliRunner().invoke(cli, ["evaluate", "-m", str(trained), str(split_dir / "test.jsonl"), "--json"])
    assert out.exit_code == 0, out.output
    metrics = json.loads(out.stdout)
    assert 0 <= metrics["ece"] <= 1 and metrics["nll"] > 0


def test_info_shows_the_temperature(trained: Path) -> None:
    described = json.loads(CliRunner().invoke(cli, ["info", "-m", str(trained), "--json"]).stdout)
    config = json.loads((trained / "config.json").read_text())
    assert described["calibration"] == config["calibration"] and "ece" in described["scores"]["test"]
    shown = CliRunner().invoke(cli, ["info", "-m", str(trained)]).output
    assert f"temperature {config['calibration']['temperature']:g}" in shown
