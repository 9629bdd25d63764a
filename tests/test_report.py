"""grutext report: the page and its charts, from the checkpoint alone and with data; rendered in a real
browser (headless Chromium) where one is installed."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from grutext.cli import cli
from grutext.report import (
    DPI,
    MAX_WIDTH,
    LossTerms,
    class_chart,
    confusion_chart,
    curve_chart,
    expected_calibration_error,
    label_frequency_chart,
)


def report(*args: str) -> str:
    result = CliRunner().invoke(cli, ["report", *args])
    assert result.exit_code == 0, result.output
    return result.stderr


def images_of(page: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page.read_text(encoding="utf-8"))


def test_report_with_data(trained: Path, split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert f"wrote {out / 'index.html'}" in report("-m", str(trained), str(split_dir), "-o", str(out))
    charts = ["curve.png", "confusion.png", "class.png", "calibration.png", "coverage.png"]
    assert images_of(out / "index.html") == charts
    for name in images_of(out / "index.html"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert ("expected calibration error" in page and "Most confident mistakes" in page) or "accuracy" in page
    assert "<script" not in page and "http" not in page  # opens from disk, no network
    # under the curves, why the training loss sits above the validation loss (the fixture has the bigram head)
    assert "The two losses measure different things" in page and "divided by 2" in page
    # the curve before calibration beside the one after: the fixture's temperature is not 1
    temperature = json.loads((trained / "config.json").read_text())["calibration"]["temperature"]
    assert temperature != 1.0 and "ECE before calibration" in page and f"({temperature:.3g})" in page


def test_report_from_the_checkpoint_alone(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    report("-m", str(trained), "-o", str(out))
    assert images_of(out / "index.html") == ["curve.png", "confusion.png", "class.png"]
    assert "as scored at training time" in (out / "index.html").read_text(encoding="utf-8")


def test_multi_label_report_shows_thresholds_and_label_frequency(tmp_path: Path) -> None:
    from tests.conftest import TINY, write_jsonl
    from tests.test_multilabel import multilabel_rows

    data = write_jsonl(tmp_path / "train.jsonl", multilabel_rows(200, 1))
    model = tmp_path / "m"
    assert CliRunner().invoke(cli, ["train", str(data), "-o", str(model), *TINY]).exit_code == 0
    out = tmp_path / "r"
    report("-m", str(model), str(data), "-o", str(out))
    page = (out / "index.html").read_text(encoding="utf-8")
    assert images_of(out / "index.html") == ["curve.png", "class.png", "label_f1.png", "calibration.png"]
    assert "decision thresholds" in page and "micro f1" in page


def test_expected_calibration_error() -> None:
    confidence = np.array([0.9, 0.9, 0.6, 0.6])
    assert expected_calibration_error(confidence, np.array([1.0, 1.0, 1.0, 0.0]))[0] == pytest.approx(
        0.5 * 0.1 + 0.5 * 0.1
    )
    assert expected_calibration_error(np.array([0.75] * 4), np.array([1.0, 1.0, 1.0, 0.0]))[0] == pytest.approx(0.0)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's header."""
    return struct.unpack(">II", path.read_bytes()[16:24])


def scores(labels: list[str]) -> dict[str, Any]:
    """Metrics of a single-label model over `labels`, as the head reports them."""
    n = len(labels)
    per_class = {lb: {"precision": 0.5, "recall": 0.4, "f1": 0.44, "support": 10 + i} for i, lb in enumerate(labels)}
    matrix = (np.eye(n) * 8 + 1).astype(int).tolist()
    return {"labels": labels, "per_class": per_class, "confusion_matrix": matrix}


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The matplotlib figures the charts save, kept for a test to measure."""
    import grutext.report

    kept: list[Any] = []
    save = grutext.report._save

    def keep(fig: Any, path: Path) -> str:
        kept.append(fig)
        return save(fig, path)

    monkeypatch.setattr(grutext.report, "_save", keep)
    return kept


def test_many_labels_make_charts_taller_never_wider(tmp_path: Path) -> None:
    """28 labels (GoEmotions): every chart fits the page's width, so it shows at its natural size with its text
    at 12 px or more; the per-class chart grows a row per label. (class.png was 1,980 px wide, shown at 1,186.)"""
    few, many = tmp_path / "few", tmp_path / "many"
    few.mkdir()
    many.mkdir()
    for out, labels in ((few, ["neg", "pos"]), (many, [f"emotion number {i}" for i in range(28)])):
        for chart in (class_chart, confusion_chart, label_frequency_chart):
            name = chart(scores(labels), out)
            assert name is not None
            assert png_size(out / name)[0] <= MAX_WIDTH * DPI
    assert png_size(many / "class.png")[1] > 4 * png_size(few / "class.png")[1]


def test_the_per_class_legend_covers_no_bar(tmp_path: Path, figures: list[Any]) -> None:
    class_chart(scores(["neg", "pos"]), tmp_path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    (fig,) = figures
    canvas: Any = FigureCanvasAgg(fig)  # the figure was closed: draw it again to measure where things are
    canvas.draw()
    renderer = canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(bar.get_window_extent(renderer)) for bar in fig.axes[0].patches)


HISTORY = [
    {"epoch": 1, "train_loss": 1.29, "val_loss": 0.52, "metric": "accuracy", "val_score": 0.8},
    {"epoch": 2, "train_loss": 1.10, "val_loss": 0.45, "metric": "accuracy", "val_score": 0.85},
]
BIGRAM_INFO = {
    "labels": ["neg", "pos"],
    "multi_label": False,
    "model": {"bigram_buckets": 50000, "dropout": 0.3},
    "train": {"label_smoothing": 0.1, "resolved_word_dropout": 0.1},
}


def test_learning_curves_have_whole_epochs_and_comparable_losses(tmp_path: Path, figures: list[Any]) -> None:
    terms = LossTerms.of(BIGRAM_INFO)
    assert curve_chart(HISTORY, 2, terms, tmp_path) == "curve.png"
    losses, scores_ax = figures[0].axes
    for ax in (losses, scores_ax):
        low, high = ax.get_xlim()
        assert [t for t in ax.get_xticks() if low <= t <= high] == [1.0, 2.0]  # not 1.0, 1.2, ...
    training, validation = losses.get_lines()[:2]
    assert list(training.get_ydata()) == [1.29 / 2, 1.10 / 2]  # the stored sum of two heads, per head
    assert list(validation.get_ydata()) == [0.52, 0.45]
    assert training.get_label() == "training loss (mean of the 2 heads' losses, label smoothing 0.1, dropout on)"
    assert validation.get_label() == "validation loss (averaged heads' logits, no smoothing, no dropout)"


def test_loss_terms_say_what_each_loss_is() -> None:
    terms = LossTerms.of(BIGRAM_INFO)
    assert (terms.heads, terms.smoothing, terms.dropout, terms.word_dropout) == (2, 0.1, 0.3, 0.1)
    # smoothed targets (0.95, 0.05): no head's cross-entropy goes below their entropy
    assert terms.floor() == pytest.approx(-0.95 * np.log(0.95) - 0.05 * np.log(0.05))
    caption = terms.caption()
    assert "label smoothing 0.1" in caption and "sum of the 2 heads' losses" in caption and "divided by 2" in caption
    multi = LossTerms.of({**BIGRAM_INFO, "multi_label": True, "model": {"bigram_buckets": 0, "dropout": 0.3}})
    assert (multi.heads, multi.smoothing, multi.floor()) == (1, 0.0, 0.0)  # BCE is not smoothed
    assert multi.training_label() == "training loss (dropout on)"
    assert "smoothing" not in multi.training_label() and "divided" not in multi.caption()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium here (apt install chromium)")
def test_the_page_renders_with_its_charts_in_a_browser(trained: Path, split_dir: Path, tmp_path: Path) -> None:
    import matplotlib.image

    out = tmp_path / "r"
    report("-m", str(trained), str(split_dir), "-o", str(out))
    shot = tmp_path / "shot.png"
    flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
    subprocess.run(
        [str(CHROMIUM), *flags.split(), "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2600", f"--screenshot={shot}",
         (out / "index.html").as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    pixels = matplotlib.image.imread(shot)[..., :3]
    # matplotlib's first colour (tab:blue, #1f77b4) fills the charts' lines and bars: a page whose images did not
    # load shows none of it.
    blue = np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255).max(axis=-1) < 0.06
    assert blue.sum() > 2000


def test_report_lists_the_suspect_labels_of_an_audit(trained: Path, tmp_path: Path) -> None:
    audit = tmp_path / "suspects.jsonl"
    rows = [
        {"row": 7, "text": "a <b>superb</b> film", "label": "neg", "suggested": "pos", "score": 0.93},
        {"row": 2, "text": "dull", "label": "pos", "suggested": "neg", "score": 0.61},
    ]
    audit.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "r"
    report("-m", str(trained), "-o", str(out), "--audit", str(audit))
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Suspect labels" in page and "2 training rows" in page
    assert "&lt;b&gt;superb&lt;/b&gt;" in page and "<b>superb" not in page  # the text is escaped
    audit.write_text('{"row": 1}\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["report", "-m", str(trained), "-o", str(out), "--audit", str(audit)])
    assert result.exit_code == 1 and "line 1: not a row of `grutext audit --format jsonl`" in result.stderr
