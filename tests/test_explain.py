"""grutext explain: occlusion attributions, offsets that map back into the text (English and Chinese), the
output formats, and (slow, real data) ERASER's comprehensiveness."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from grutext.cli import cli
from grutext.engine import load_engine
from grutext.errors import UsageError
from grutext.explain import FULL_AT, TEXT_COLOUR, Explanation, TokenAttribution, comprehensiveness, explain, page, tint
from grutext.tokenizer import token_char_grams
from tests.browser import contrast
from tests.conftest import TINY, sentiment_rows, write_jsonl


@pytest.mark.parametrize("engine", ["torch", "onnx"])
@pytest.mark.parametrize("fixture", ["trained", "trained_chars"])
def test_attributions_are_the_fall_of_the_probability_when_a_token_is_deleted(
    request: pytest.FixtureRequest, fixture: str, engine: str
) -> None:
    model = load_engine(request.getfixturevalue(fixture), engine)
    text = "the  film was superb, really superb"
    (e,) = explain(model, [text])
    assert e.label == "pos" and [t.token for t in e.tokens] == ["the", "film", "was", "superb", ",", "really", "superb"]
    assert all(text[t.start : t.end] == t.token for t in e.tokens)
    ids = [model.tokenizer.encode(text, add_special_tokens=False).ids]
    without = [ids[0][:i] + ids[0][i + 1 :] for i in range(len(ids[0]))]
    cfg, grams = model.model_config, None
    assert fixture == "trained" or cfg.char_span == (2, 4)
    if cfg.char_span is not None:  # deleting a token deletes its word's n-grams too
        (words,) = token_char_grams(model.tokenizer, [text], model.tokenizer_config, cfg.char_span, cfg.bigram_buckets)
        grams = [[g for w in words for g in w]] + [[g for w in words[:i] + words[i + 1 :] for g in w] for i in range(7)]
    probs = np.asarray(model.proba_of_ids(ids + without, grams))[:, model.labels.index("pos")]
    np.testing.assert_allclose([t.attribution for t in e.tokens], probs[0] - probs[1:], atol=1e-6)
    assert e.score == pytest.approx(float(probs[0]), abs=1e-6)


def test_chinese_offsets_map_back_character_by_character(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "cn.jsonl", sentiment_rows(200, seed=5, chinese=True))
    out = tmp_path / "cn"
    assert CliRunner().invoke(cli, ["train", str(data), "-o", str(out), *TINY, "--epochs", "10"]).exit_code == 0
    text = "房间很好，服务满意！Great 酒店"
    result = CliRunner().invoke(cli, ["explain", "-m", str(out), "--format", "jsonl"], input=text + "\n")
    record = json.loads(result.stdout)
    assert record["text"] == text and record["label"] == "pos"
    assert all(text[t["start"] : t["end"]] == t["token"] for t in record["tokens"])
    assert [t["token"] for t in record["tokens"]][:4] == ["房", "间", "很", "好"]
    best = max(record["tokens"], key=lambda t: t["attribution"])
    assert best["token"] in "很好满意"


def test_formats_and_label(trained: Path, tmp_path: Path) -> None:
    text = "a dreadful and boring film\n"
    plain = CliRunner(env={"NO_COLOR": "1"}).invoke(cli, ["explain", "-m", str(trained)], input=text)
    assert plain.exit_code == 0 and plain.stdout.startswith("neg (")
    assert "dreadful[+" in plain.stdout and plain.stdout.count("\n") == 1
    as_pos = CliRunner().invoke(cli, ["explain", "-m", str(trained), "--label", "pos", "--format", "jsonl"], input=text)
    assert json.loads(as_pos.stdout)["label"] == "pos"
    page = tmp_path / "x.html"
    CliRunner().invoke(cli, ["explain", "-m", str(trained), "--html", str(page)], input=text)
    assert "<span style=" in page.read_text(encoding="utf-8") and "dreadful" in page.read_text(encoding="utf-8")
    bad = CliRunner().invoke(cli, ["explain", "-m", str(trained), "--label", "meh"], input=text)
    assert bad.exit_code == 2 and "not one of the model's labels" in bad.output


def explained(text: str, label: str, attributions: dict[str, float]) -> Explanation:
    tokens, at = [], 0
    for word in text.split():
        start = text.index(word, at)
        at = start + len(word)
        tokens.append(TokenAttribution(word, start, at, attributions.get(word, 0.0)))
    return Explanation(text, label, 0.9, tokens)


def test_the_page_colours_every_text_on_one_scale() -> None:
    """A token's colour says how much it moved the probability, the same in every text: a weak token alone in
    its text is not painted as strongly as the strongest token of another (per-text scaling did that)."""
    html_page = page(
        [
            explained("a bad film", "neg", {"bad": 0.020}),
            explained("a boring film", "neg", {"boring": 0.344, "film": -0.1}),
            explained("so boring", "neg", {"boring": 0.344}),
        ]
    )
    spans = re.findall(r'background: rgb\((\d+),(\d+),(\d+)\)" class="t" title="[^"]*">([^<]+)<', html_page)
    colours = [(token, (int(r), int(g), int(b))) for r, g, b, token in spans]  # the legend's swatches too
    boring = [rgb for token, rgb in colours if token == "boring"]
    (bad,) = [rgb for token, rgb in colours if token == "bad"]
    assert bad == tint(0.020) and min(bad) > 240  # a faint tint, not the full colour its text's maximum had
    assert boring == [tint(0.344)] * 2 and bad != boring[0]  # the same colour in each text
    assert tint(FULL_AT) == tint(1.0) and tint(0.0) == (255, 255, 255)
    assert "Colour scale, the same for every text" in html_page


def test_text_stays_readable_on_every_colour() -> None:
    """Contrast ratio of the text on its background of 4.5:1 or more (WCAG AA) at every intensity."""
    worst = min(contrast(TEXT_COLOUR, tint(a)) for a in np.linspace(-1, 1, 401))
    assert worst >= 4.5


@pytest.mark.slow
def test_faithfulness_on_sst2(tmp_path: Path) -> None:
    data = Path(os.environ["GRUTEXT_DATA"]) / "sst2" if os.environ.get("GRUTEXT_DATA") else None
    if data is None or not (data / "test.jsonl").exists():
        pytest.skip("GRUTEXT_DATA with sst2 is not here")
    out = tmp_path / "sst2"
    assert CliRunner().invoke(cli, ["train", str(data), "-o", str(out), "--epochs", "2"]).exit_code == 0
    rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in rows if len(r["text"].split()) >= 4][:150]
    top, rand = comprehensiveness(load_engine(out), texts)
    print(f"sst2, 150 test sentences: deleting the top 2 tokens lowers p by {top:.3f}, 2 random tokens by {rand:.3f}")
    assert top >= 2 * rand and top >= 0.10


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_a_blank_line_is_not_explained_and_keeps_its_line(trained: Path, tmp_path: Path, engine: str) -> None:
    text = "a dreadful and boring film\n\n   \nsuperb\n"
    args = ["explain", "-m", str(trained), "--engine", engine]
    plain = CliRunner(env={"NO_COLOR": "1"}).invoke(cli, args, input=text)
    assert plain.exit_code == 0, plain.output
    lines = plain.stdout.split("\n")
    assert len(lines) == 5 and lines[1] == lines[2] == "" and lines[0].startswith("neg (") and "superb[" in lines[3]
    records = [
        json.loads(line)
        for line in CliRunner().invoke(cli, [*args, "--format", "jsonl"], input=text).stdout.splitlines()
    ]
    assert [r.get("blank", False) for r in records] == [False, True, True, False]
    assert records[2] == {"text": "   ", "label": "", "score": None, "tokens": [], "blank": True}
    assert records[3]["label"] == "pos" and records[3]["tokens"]
    page_file = tmp_path / "x.html"
    CliRunner().invoke(cli, [*args, "--label", "pos", "--html", str(page_file)], input=text)
    assert page_file.read_text(encoding="utf-8").count("a blank line: no label") == 2
    with pytest.raises(UsageError, match="blank"):
        comprehensiveness(load_engine(trained, engine), ["a dreadful and boring film", " "], k=1)
