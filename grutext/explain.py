"""`grutext explain`: which tokens drove a prediction, by occlusion.

Each token's attribution is how much the probability of the explained label falls when that token alone is
deleted from the text: p(label | text) - p(label | text without token i). This is occlusion (Zeiler and
Fergus 2014), in its leave-one-out form for text (Li, Monroe and Jurafsky 2016). Why occlusion rather than
integrated gradients: it asks the model itself, so it needs no gradients and runs on either engine (ONNX
included, with no torch); it cannot saturate as gradients do at a confident prediction; and its unit, a
change of probability, is what a user reads. It costs one forward pass per token, all batched together.

Offsets come from the tokenizer and point into the original text, so English words and Chinese characters
alike map back exactly. ERASER's comprehensiveness (DeYoung et al. 2020) checks faithfulness: deleting each
text's most-attributed tokens must lower the label's probability far more than deleting random ones
(tests/test_explain.py; bench/faithfulness.py measures it on real data).
"""

from __future__ import annotations

import html
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grutext.errors import UsageError
from grutext.prediction import is_blank
from grutext.tokenizer import capped, token_char_grams


@dataclass
class TokenAttribution:
    token: str  # the text's own characters, text[start:end]
    start: int
    end: int
    attribution: float  # the fall of the label's probability when this token is deleted


@dataclass
class Explanation:
    text: str
    label: str  # "" for a blank text
    score: float  # the label's probability for the whole text (0 for a blank text)
    tokens: list[TokenAttribution]
    blank: bool = False  # empty or only whitespace: not explained, as predict does not label it

    def record(self) -> dict[str, Any]:
        if self.blank:
            return {"text": self.text, "label": "", "score": None, "tokens": [], "blank": True}
        return {
            "text": self.text,
            "label": self.label,
            "score": round(self.score, 6),
            "tokens": [
                {"token": t.token, "start": t.start, "end": t.end, "attribution": round(t.attribution, 6)}
                for t in self.tokens
            ],
        }


@dataclass
class Encoded:
    """One text as the model reads it, token by token: ids, character offsets into the text and, for a model
    that reads character n-grams, each token's own n-gram rows (deleting a token deletes its n-grams too)."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    grams: list[list[int]] | None

    def without(self, drop: set[int]) -> tuple[list[int], list[int] | None]:
        """The model's inputs with the tokens at `drop` deleted."""
        ids = [t for i, t in enumerate(self.ids) if i not in drop]
        if self.grams is None:
            return ids, None
        return ids, [g for i, grams in enumerate(self.grams) if i not in drop for g in grams]


def tokens_with_offsets(model: Any, texts: Sequence[str]) -> list[Encoded]:
    """Token ids, character offsets (and n-gram rows) per text, truncated as the model's tokenizer settings say."""
    cfg, model_cfg = model.tokenizer_config, model.model_config
    tokenizer = model.tokenizer
    span = model_cfg.char_span
    grams = token_char_grams(tokenizer, texts, cfg, span, model_cfg.bigram_buckets) if span is not None else None
    out = []
    for k, (text, encoding) in enumerate(
        zip(texts, tokenizer.encode_batch(list(capped(texts, cfg)), add_special_tokens=False), strict=True)
    ):
        ids, offsets = list(encoding.ids), list(encoding.offsets)
        if len(ids) > cfg.max_length:  # head truncation is the tokenizer's own; head_tail keeps both ends
            head = (cfg.max_length + 1) // 2 if cfg.truncation == "head_tail" else cfg.max_length
            keep = list(range(head)) + list(range(len(ids) - (cfg.max_length - head), len(ids)))
            ids, offsets = [ids[i] for i in keep], [offsets[i] for i in keep]
        clipped = [(min(a, len(text)), min(b, len(text))) for a, b in offsets]
        out.append(Encoded(ids, clipped, None if grams is None else grams[k]))
    return out


def _inputs(rows: list[tuple[list[int], list[int] | None]]) -> tuple[list[list[int]], list[list[int]] | None]:
    """Rows of (ids, grams) as proba_of_ids takes them: ids, and grams where the model reads them."""
    grams = [g for _, g in rows if g is not None]
    return [ids for ids, _ in rows], grams if len(grams) == len(rows) else None


def explain(model: Any, texts: Sequence[str], label: str | None = None) -> list[Explanation]:
    """Occlusion attributions for `label` (default: each text's predicted label) of every token of `texts`.
    A blank text gets a blank explanation, with no label: the model's output for it is only its bias (see
    prediction.abstain), and it has no token to attribute."""
    labels = list(model.labels)
    if label is not None and label not in labels:
        raise UsageError(f"--label {label!r} is not one of the model's labels ({', '.join(labels)})")
    kept = [i for i, text in enumerate(texts) if not is_blank(text)]
    encoded = tokens_with_offsets(model, [texts[i] for i in kept])
    explained: dict[int, Explanation] = {}
    group: list[int] = []  # positions in `kept` whose occluded rows go through the model together
    budget = 0
    for k, e in enumerate(encoded):
        group.append(k)
        budget += (len(e.ids) + 1) * max(len(e.ids), 1)
        if budget >= TOKEN_BUDGET or k == len(encoded) - 1:
            found = _explain_group(model, labels, label, [texts[kept[i]] for i in group], [encoded[i] for i in group])
            explained.update((kept[i], one) for i, one in zip(group, found, strict=True))
            group, budget = [], 0
    return [explained.get(i) or Explanation(text, "", 0.0, [], blank=True) for i, text in enumerate(texts)]


TOKEN_BUDGET = 1_000_000  # occluded tokens held at once: a 512-token text alone makes 263k


def _explain_group(
    model: Any,
    labels: list[str],
    label: str | None,
    texts: list[str],
    encoded: list[Encoded],
) -> list[Explanation]:
    rows: list[tuple[list[int], list[int] | None]] = []
    for e in encoded:
        rows.append(e.without(set()))
        rows.extend(e.without({i}) for i in range(len(e.ids)))  # each token deleted in turn
    probs = np.asarray(model.proba_of_ids(*_inputs(rows)), dtype=np.float64)
    out, at = [], 0
    for text, e in zip(texts, encoded, strict=True):
        ids, offsets = e.ids, e.offsets
        whole = probs[at]
        target = labels.index(label) if label is not None else int(whole.argmax())
        without = probs[at + 1 : at + 1 + len(ids), target]
        at += 1 + len(ids)
        tokens = [
            TokenAttribution(text[a:b], a, b, float(whole[target] - p))
            for (a, b), p in zip(offsets, without, strict=True)
        ]
        out.append(Explanation(text, labels[target], float(whole[target]), tokens))
    return out


def comprehensiveness(model: Any, texts: Sequence[str], k: int = 2, seed: int = 0) -> tuple[float, float]:
    """ERASER's comprehensiveness (DeYoung et al. 2020) at k tokens: the mean fall of the predicted label's
    probability when each text's k most-attributed tokens are deleted, and when k random tokens are. A
    faithful attribution makes the first far larger. Texts need more than k tokens."""
    rng = random.Random(seed)
    if any(is_blank(text) for text in texts):
        raise UsageError("comprehensiveness needs texts with tokens; drop the blank ones")
    explained = explain(model, texts)
    columns = [list(model.labels).index(e.label) for e in explained]
    top: list[tuple[list[int], list[int] | None]] = []
    chance: list[tuple[list[int], list[int] | None]] = []
    for encoded, e in zip(tokens_with_offsets(model, texts), explained, strict=True):
        n = len(encoded.ids)
        if n <= k:
            raise UsageError(f"comprehensiveness at k={k} needs texts of more than {k} tokens: {e.text!r}")
        order = sorted(range(n), key=lambda i: -e.tokens[i].attribution)
        for drop, rows in ((set(order[:k]), top), (set(rng.sample(range(n), k)), chance)):
            rows.append(encoded.without(drop))
    base = np.array([e.score for e in explained])
    falls = []
    for rows in (top, chance):
        probs = np.asarray(model.proba_of_ids(*_inputs(rows)), dtype=np.float64)
        falls.append(float(np.mean(base - probs[np.arange(len(rows)), columns])))
    return falls[0], falls[1]


def plain(explanation: Explanation) -> str:
    """One explanation as one line of plain text, each token followed by its attribution in brackets; a blank
    text stays a blank line, so output lines still match input lines."""
    if explanation.blank:
        return ""
    parts, cursor = [], 0
    for t in explanation.tokens:
        parts.append(explanation.text[cursor : t.start] + f"{t.token}[{t.attribution:+.3f}]")
        cursor = t.end
    return f"{explanation.label} ({explanation.score:.3f}): " + "".join(parts) + explanation.text[cursor:]


# One colour scale for the whole page, so equal colours mean equal effects across texts: an attribution is a
# change of probability in [-1, 1], and from FULL_AT on a token has the full tint. The full tints are light
# enough that TEXT_COLOUR on them has a contrast ratio above 4.5:1 (WCAG AA); a weaker effect is lighter still.
FULL_AT = 0.5
TOWARDS = (90, 190, 90)  # green: deleting the token lowers the label's probability
AGAINST = (235, 105, 105)  # red: deleting the token raises it
TEXT_COLOUR = (17, 17, 17)
LEGEND_STEPS = (-0.5, -0.25, -0.1, -0.02, 0.0, 0.02, 0.1, 0.25, 0.5)


def tint(attribution: float) -> tuple[int, int, int]:
    """The background of a token: white mixed with the full tint in proportion to |attribution| / FULL_AT."""
    share = min(abs(attribution) / FULL_AT, 1.0)
    full = TOWARDS if attribution > 0 else AGAINST
    return (
        round(255 + (full[0] - 255) * share),
        round(255 + (full[1] - 255) * share),
        round(255 + (full[2] - 255) * share),
    )


def _swatch(attribution: float, text: str, value: str) -> str:
    """`text` on the background of `attribution`, with `value` shown on hover."""
    r, g, b = tint(attribution)
    return f'<span style="background: rgb({r},{g},{b})" class="t" title="{value}">{html.escape(text)}</span>'


def page(explanations: Sequence[Explanation]) -> str:
    """A self-contained HTML page with the texts highlighted (green: towards the label, red: against it), on one
    colour scale for every text (a legend shows it)."""
    rows = []
    for e in explanations:
        if e.blank:
            rows.append("<p><i>(a blank line: no label)</i></p>")
            continue
        spans, cursor = [], 0
        for t in e.tokens:
            spans.append(html.escape(e.text[cursor : t.start]))
            spans.append(_swatch(t.attribution, t.token, f"{t.attribution:+.4f}"))
            cursor = t.end
        spans.append(html.escape(e.text[cursor:]))
        rows.append(f"<p><b>{html.escape(e.label)}</b> ({e.score:.3f}): {''.join(spans)}</p>")
    legend = " ".join(_swatch(a, f"{a:+.2f}" if a else "0", f"{a:+.2f}") for a in LEGEND_STEPS)
    r, g, b = TEXT_COLOUR
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>grutext explain</title>'
        "<style>body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; "
        f"line-height: 1.8; color: rgb({r},{g},{b}); overflow-wrap: anywhere }}"
        " .t { padding: 0 1px; border-radius: 2px } .legend { font-size: 0.9em }"
        "</style></head><body><h1>grutext explain</h1><p>Green tokens raise the label's probability, red ones "
        "lower it (occlusion: the fall of the probability when the token is deleted; hover for the value).</p>"
        f'<p class="legend">Colour scale, the same for every text: {legend} '
        f"(a change of {FULL_AT:g} or more has the full colour).</p>" + "".join(rows) + "</body></html>\n"
    )


def as_json(explanation: Explanation) -> str:
    return json.dumps(explanation.record(), ensure_ascii=False)
