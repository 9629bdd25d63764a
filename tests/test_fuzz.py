"""Property tests: any text gives exactly one output line; random bytes never crash a loader."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grutext.data import load_labelled
from grutext.errors import DataError
from grutext.predict import Predictor, format_prediction
from grutext.readers import FORMATS

# Control characters, RTL marks, emoji, CJK, combining marks, surrogates excluded (not encodable).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
NASTY = st.sampled_from(
    [
        "\u202e",
        "\u200f",
        "\x00",
        "\x1b[31m",
        "🤖",
        "酒店",
        "\u0301",
        "\ufeff",
        "\r",
        "\u2028",
        "\u0085",
        "\t",
        " ",
        "ﷺ",
        "𝕏",
    ]
)


@pytest.fixture(scope="module")
def predictor(trained: Path) -> Predictor:
    return Predictor.load(trained)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.one_of(ANY_TEXT, st.lists(NASTY, max_size=40).map("".join)), min_size=1, max_size=8))
def test_any_text_gives_one_line_and_valid_json(predictor: Predictor, texts: list[str]) -> None:
    preds = predictor.predict(texts)
    assert len(preds) == len(texts)
    for text, pred in zip(texts, preds, strict=True):
        for fmt in ("label", "tsv", "jsonl"):
            line = format_prediction(pred, fmt, top_k=2)
            assert "\n" not in line and "\r" not in line
        record = json.loads(format_prediction(pred, "jsonl"))
        assert abs(sum(record["probs"].values()) - 1) < 1e-4
        if text.strip():
            assert record["label"] in predictor.labels and "blank" not in record
        else:  # nothing to read: no label
            assert record["label"] == "" and record["blank"] is True


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(alphabet=st.lists(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=50))
def test_hundred_thousand_character_texts(predictor: Predictor, alphabet: list[str]) -> None:
    text = "".join(alphabet[i % len(alphabet)] for i in range(100_000))
    assert len(predictor.predict([text, ""])) == 2


def test_stream_keeps_one_line_per_input_line(predictor: Predictor) -> None:
    import io

    from grutext.inputs import iter_lines

    raw = "a\u2028b\nc\u0085d\r\ne\x0bf\n\n\xff".encode("utf-8", "surrogateescape")
    lines = list(iter_lines(io.BytesIO(raw)))
    assert len(lines) == raw.count(b"\n") + 1
    assert sum(len(chunk) for chunk in predictor.stream(iter(lines))) == len(lines)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.one_of(st.binary(max_size=2000), ANY_TEXT.map(lambda t: t.encode())),
    suffix=st.sampled_from(sorted(FORMATS)),
    gz=st.booleans(),
)
def test_random_bytes_never_crash_a_loader(
    tmp_path_factory: pytest.TempPathFactory, payload: bytes, suffix: str, gz: bool
) -> None:
    import gzip

    path = tmp_path_factory.mktemp("fuzz") / f"data{suffix}{'.gz' if gz else ''}"
    path.write_bytes(gzip.compress(payload) if gz else payload)
    with contextlib.suppress(DataError):
        load_labelled(str(path))
