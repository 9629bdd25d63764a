"""grutext report: the page and its charts, from the checkpoint alone and with data; rendered in a real
browser (headless Chromium) where one is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from grutext.cli import cli
from grutext.report import expected_calibration_error


def report(*args: str) -> str:
    result = CliRunner().invoke(cli, ["report", *args])
    assert result.exit_code == 0, result.output
    return result.stderr


def images_of(page: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page.read_text(encoding="utf-8"))


def test_report_with_data(trained: Path, split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert f"wrote {out / 'index.html'}" in report("-m", str(trained), str(split_dir), "-o", str(out))
    assert images_of(out / "index.html") == ["curve.png", "confusion.png", "class.png", "calibration.png"]
    for name in images_of(out / "index.html"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert ("expected calibration error" in page and "Most confident mistakes" in page) or "accuracy" in page
    assert "<script" not in page and "http" not in page  # opens from disk, no network


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
