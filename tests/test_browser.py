"""The HTML pages in a real browser (headless Chromium, tests/browser.py): `grutext report` for a two-class model
and for 28 labels (multi-label, and single-label for its confusion matrix), and `grutext explain --html`. A page
fails on a console error, an image that did not load, a page wider than a 1,280 px window, an image wider than
its box, or a chart shrunk so far that its text drops below ~10 px. Skipped where no Chromium is installed."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from grutext.cli import cli
from tests.browser import Chromium, contrast, find_chromium, parse_colour
from tests.conftest import TINY, write_jsonl

pytestmark = pytest.mark.slow

WINDOW = 1280
# Chart text is at least 8 pt at the charts' 110 dpi, 12.2 px at natural size: shown at 85% or more, it stays
# above 10 px.
LEAST_SCALE = 0.85
LEAST_CONTRAST = 4.5  # WCAG AA for body text

# GoEmotions' 28 labels: real names and lengths for the many-label charts.
EMOTIONS = [
    *("admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire"),
    *("disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief"),
    *("joy", "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness", "surprise"),
    "neutral",
]
FILLER = ["the", "a", "and", "of", "it", "was", "so", "that"]

MEASURE = """(() => {
  const root = document.scrollingElement;
  const images = [...document.images].map(img => {
    const box = img.parentElement, style = getComputedStyle(box);
    return {
      src: img.getAttribute("src"),
      natural: img.naturalWidth,
      shown: img.width,
      outer: img.getBoundingClientRect().width,
      room: box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight),
    };
  });
  return {width: root.scrollWidth, images};
})()"""

COLOURS = """[...document.querySelectorAll("span[style]")].map(s => {
  const style = getComputedStyle(s);
  return [s.textContent, style.backgroundColor, style.color];
})"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium here: apt-get install chromium, or set CHROMIUM to the browser's path")
    with Chromium(executable, tmp_path_factory.mktemp("chromium") / "profile") as chromium:
        yield chromium


def problems(browser: Chromium, page: Path, shot: Path | None = None) -> list[str]:
    """Everything wrong with `page` in a WINDOW px wide window (a screenshot goes to `shot`, for a person)."""
    loaded = browser.open(page.as_uri(), width=WINDOW)
    found = list(loaded.errors)
    measured = browser.evaluate(MEASURE)
    if measured["width"] > WINDOW:
        found.append(f"the page is {measured['width']} px wide in a {WINDOW} px window")
    for img in measured["images"]:
        if img["natural"] == 0:
            found.append(f"{img['src']} did not load")
            continue
        if img["outer"] > img["room"] + 0.5:
            found.append(f"{img['src']} is {img['outer']:.0f} px wide in a {img['room']:.0f} px box")
        if img["shown"] < LEAST_SCALE * img["natural"]:
            found.append(
                f"{img['src']} is shown {img['shown']} px wide of its {img['natural']} px "
                f"({img['shown'] / img['natural']:.0%}): its text is below ~10 px"
            )
    if shot is not None:
        browser.screenshot(shot)
    return found


def train(rows: list[dict[str, object]], root: Path) -> tuple[Path, Path]:
    """A TINY model trained for 2 epochs on `rows` (train, validation and test are cut from them)."""
    data = root / "data"
    write_jsonl(data / "train.jsonl", rows[:600])
    write_jsonl(data / "validation.jsonl", rows[600:700])
    write_jsonl(data / "test.jsonl", rows[700:])
    model = root / "model"
    result = CliRunner().invoke(cli, ["train", str(data), "-o", str(model), *TINY, "--epochs", "2"])
    assert result.exit_code == 0, result.output
    return model, data


def emotion_rows(multi_label: bool, n: int = 800, seed: int = 0) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for _ in range(n):
        labels = sorted(rng.sample(EMOTIONS, rng.choice([1, 1, 2]) if multi_label else 1))
        words = [label[:5] + "y" for label in labels] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), **({"labels": labels} if multi_label else {"label": labels[0]})})
    return rows


def report(model: Path, data: Path, out: Path) -> Path:
    result = CliRunner().invoke(cli, ["report", "-m", str(model), str(data), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out / "index.html"


def test_the_report_reads_in_a_browser(browser: Chromium, trained: Path, split_dir: Path, tmp_path: Path) -> None:
    page = report(trained, split_dir, tmp_path / "r")
    found = problems(browser, page, tmp_path / "shot.png")
    assert not found, "\n".join(found)
    assert len(re.findall("<img ", page.read_text(encoding="utf-8"))) == 5  # coverage.png: --min-score's chart


@pytest.mark.parametrize("multi_label", [True, False], ids=["multi-label", "single-label"])
def test_28_labels_read_at_the_width_the_page_shows(browser: Chromium, tmp_path: Path, multi_label: bool) -> None:
    model, data = train(emotion_rows(multi_label), tmp_path)
    page = report(model, data, tmp_path / "r")
    found = problems(browser, page, tmp_path / "shot.png")
    assert not found, "\n".join(found)
    shown = re.findall(r'<img src="([^"]+)"', page.read_text(encoding="utf-8"))
    many = ["class.png", "label_f1.png"] if multi_label else ["confusion.png", "class.png"]
    assert set(many) <= set(shown)


def test_the_explain_page_reads_in_a_browser(browser: Chromium, trained: Path, tmp_path: Path) -> None:
    page = tmp_path / "x.html"
    texts = [
        "a dreadful and boring film",
        "the film was superb and charming with a bad plot",
        "see " + "x" * 300 + " for the cast",  # one long word must wrap, not widen the page
    ]
    result = CliRunner().invoke(cli, ["explain", "-m", str(trained), "--html", str(page)], input="\n".join(texts))
    assert result.exit_code == 0, result.output
    found = problems(browser, page, tmp_path / "shot.png")
    spans = browser.evaluate(COLOURS)
    assert len(spans) >= 20  # the tokens (and the legend's swatches)
    if not browser.evaluate("document.querySelectorAll('.legend span[style]').length"):
        found.append("no legend explains the colours")
    for text, background, colour in spans:
        ratio = contrast(parse_colour(background), parse_colour(colour))
        if ratio < LEAST_CONTRAST:
            found.append(f"{text!r}: {colour} on {background} has a contrast ratio of {ratio:.2f}")
    assert not found, "\n".join(found)


def test_the_checks_catch_a_broken_page(browser: Chromium, tmp_path: Path) -> None:
    """The checks above fail where they should: a missing image, a chart shrunk to fit, a page too wide, an error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(18, 2))  # 1,980 px at 110 dpi, as class.png was for 28 labels
    fig.savefig(tmp_path / "wide.png", dpi=110)
    plt.close(fig)
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>broken</title></head><body>'
        '<figure><img src="missing.png"></figure>'
        '<figure style="max-width: 1000px"><img src="wide.png" style="max-width: 100%"></figure>'
        '<div style="width: 1500px">too wide</div>'
        '<script>console.error("boom")</script></body></html>',
        encoding="utf-8",
    )
    found = "\n".join(problems(browser, page))
    assert "missing.png did not load" in found
    assert "wide.png is shown 1000 px wide of its 1980 px" in found
    assert "px wide in a 1280 px window" in found
    assert "console: boom" in found
    assert "ERR_FILE_NOT_FOUND" in found  # the failed request, as the browser's log reports it
