"""Prediction records, their output lines, and streaming: what both engines (torch, ONNX) share. No torch.

An engine is anything with `labels` and `predict_proba(texts) -> [N, C] probabilities`; `predictions` turns
those into records (the most likely label; for a multi-label model every label its decision keeps), and
`stream` runs an engine over an input of any length with flat memory and prompt answers.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grutext.decision import Decision
from grutext.errors import ConfigError, InputError

_END = object()


@dataclass
class Prediction:
    """The most likely label, its probability, and the probability of every label. For a multi-label
    model, `labels` holds every label above its threshold (`label` is then those names joined by ",")."""

    label: str
    score: float
    probs: dict[str, float]
    labels: list[str] | None = None
    abstained: bool = False  # the score was below the --min-score asked for: `label` is the fallback
    blank: bool = False  # the text was empty or only whitespace: no label (the fallback), see abstain

    def top_k(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]


def check_texts(texts: Any) -> list[str]:
    """`texts` as a list of strings, or an InputError saying which item is not one (the Python API's and the
    server's check: the command line reads only strings)."""
    if isinstance(texts, (str, bytes)):
        raise InputError("texts must be a list of strings, not one string; wrap a single text in a list: [text]")
    try:
        items = list(texts)
    except TypeError:
        raise InputError(f"texts must be a list of strings, not {type(texts).__name__}") from None
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InputError(f"texts[{i}] is {_described(text)}, not a string; texts must be a list of strings")
    return items


def checked_texts(texts: Iterable[Any]) -> Iterator[str]:
    """The items of an iterable of texts as they come, each checked as `check_texts` checks a list."""
    if isinstance(texts, (str, bytes)):
        raise InputError("texts must be an iterable of strings, not one string; wrap a single text in a list")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts[{i}] is {_described(text)}, not a string; texts must be a list of strings")
        yield text


def _described(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def check_settings(batch_size: int, threshold: float | None) -> None:
    """A loaded model's settings, checked as the command line's options are."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise ConfigError(f"threshold must be a number between 0 and 1, got {threshold!r}")
    if threshold is not None and not 0 < threshold < 1:
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold!r}")


def predictions(labels: Sequence[str], probs: Any, decision: Decision | None) -> list[Prediction]:
    """One record per row of probs [N, C]: the argmax; with a (multi-label) decision, the labels it keeps,
    most likely first."""
    p = np.asarray(probs, dtype=np.float64)
    rows = p.tolist()
    best = p.argmax(axis=1).tolist() if len(rows) else []
    chosen = decision.apply(p).tolist() if decision is not None else None
    out = []
    for i, row in enumerate(rows):
        pred = Prediction(labels[best[i]], row[best[i]], dict(zip(labels, row, strict=True)))
        if chosen is not None:
            picked = sorted((c for c, on in enumerate(chosen[i]) if on), key=lambda c: -row[c])
            pred.labels = [labels[c] for c in picked]
            pred.label = ",".join(pred.labels)
        out.append(pred)
    return out


def check_abstain(
    min_score: float | None,
    fallback: str,
    multi_label: bool,
    names: tuple[str, str] = ("min_score", "fallback"),
    instead: str = "raise the threshold instead",
) -> None:
    """--min-score and --fallback, as the API, the server and the command line check them; `names` and `instead`
    word the message for each (the server's JSON fields, the command line's flags)."""
    if min_score is None:
        return
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0 <= min_score <= 1:
        raise ConfigError(f"{names[0]} must be a number from 0 to 1, got {min_score!r}")
    if not isinstance(fallback, str) or "\n" in fallback or "\t" in fallback:
        raise ConfigError(f"{names[1]} must be a string without tabs or newlines, got {fallback!r}")
    if multi_label:
        raise ConfigError(
            f"{names[0]} is for single-label models; a multi-label model keeps each label whose probability reaches "
            f"its threshold, and prints none when none does: {instead}"
        )


def is_blank(text: str) -> bool:
    """Empty or only whitespace: a text the model has nothing to read in (see abstain)."""
    return not text.strip()


def abstain(
    preds: list[Prediction], min_score: float | None, fallback: str = "", texts: Sequence[str] | None = None
) -> list[Prediction]:
    """Answer only when sure: a prediction whose top probability is below `min_score` gets the `fallback`
    label ("" by default) and `abstained` set; its score and probabilities stay, for whoever takes it over.

    A blank text (of `texts`, when given) is never answered, whatever `min_score`: training drops rows with
    an empty text, so the model's output for one is only its bias (a 2,000-phrase sst2 model said "positive"
    at 0.58). It gets the fallback (a multi-label prediction no label) and `blank` set."""
    for i, pred in enumerate(preds):
        if texts is not None and is_blank(texts[i]):
            pred.blank = True
            if pred.labels is not None:
                pred.labels, pred.label = [], ""
            else:
                pred.label, pred.abstained = fallback, True
        elif min_score is not None and pred.score < min_score:
            pred.label, pred.abstained = fallback, True
    return preds


class Labeller:
    """`predict` and `stream` for an engine, from its `predict_proba` and `records` (both engines share them)."""

    @property
    def multi_label(self) -> bool:
        raise NotImplementedError

    def predict_proba(self, texts: Sequence[str]) -> Any:
        raise NotImplementedError

    def records(self, probs: Any) -> list[Prediction]:
        """The prediction records of probabilities [N, C]."""
        raise NotImplementedError

    def predict(self, texts: Sequence[str], min_score: float | None = None, fallback: str = "") -> list[Prediction]:
        """One Prediction per text, in input order; below `min_score` the `fallback` label (see abstain)."""
        check_abstain(min_score, fallback, self.multi_label)
        return abstain(self.records(self.predict_proba(texts)), min_score, fallback, texts)

    def stream(
        self,
        texts: Iterable[str],
        chunk_size: int = 4096,
        wait: float = 0.05,
        min_score: float | None = None,
        fallback: str = "",
    ) -> Iterator[list[Prediction]]:
        """Predictions chunk by chunk, in input order (see `stream`)."""
        check_abstain(min_score, fallback, self.multi_label)
        return stream(lambda chunk: self.predict(chunk, min_score, fallback), checked_texts(texts), chunk_size, wait)


FIRST_CHUNK = 64  # lines in the first chunk; each next one doubles, up to chunk_size
CHUNK_CHARS = 1 << 19  # a chunk closes at this many characters, whatever its line count


def stream(
    predict: Callable[[list[str]], list[Prediction]],
    texts: Iterable[str],
    chunk_size: int = 4096,
    wait: float = 0.05,
    first_chunk: int = FIRST_CHUNK,
    chunk_chars: int = CHUNK_CHARS,
) -> Iterator[list[Prediction]]:
    """Predictions chunk by chunk. A chunk closes when full, or when the input pauses for `wait` seconds,
    so a slow producer (`tail -f`) sees each answer promptly while a fast one gets full batches. At most
    a few chunks are held in memory. Chunks are sorted by length into batches, so a bigger chunk pads
    less: on sst2 sentences 4,096 lines a chunk ran 1.2x faster than 1,024.

    "Full" starts small and grows: the first chunk holds `first_chunk` lines and each next one twice as
    many, up to `chunk_size` lines or `chunk_chars` characters. So the first answer never waits for
    thousands of long lines (100,000 lines of 430 characters answered after 13 s with 4,096-line chunks),
    and a reader that leaves (`| head -2`) costs at most one chunk of work after it has gone.

    The input is read by a thread, so that a pause can be noticed. When the caller stops early (closes the
    generator, or an error), the thread is told to stop and closes the input at its next record; a thread
    blocked in a read of an idle pipe cannot be woken, so it is a daemon."""
    lines: queue.Queue[object] = queue.Queue(maxsize=4 * chunk_size)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                lines.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        source = iter(texts)
        try:
            for text in source:
                if not put(text):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator's finally blocks close its files

    thread = threading.Thread(target=reader, name="grutext-predict-reader", daemon=True)
    thread.start()
    try:
        done = False
        limit = max(1, min(first_chunk, chunk_size))
        while not done:
            chunk: list[str] = []
            chars = 0
            item = lines.get()
            while True:
                if item is _END:
                    done = True
                    break
                if isinstance(item, BaseException):
                    if chunk:
                        yield predict(chunk)
                    raise item
                chunk.append(item)  # type: ignore[arg-type]
                chars += len(item)  # type: ignore[arg-type]
                if len(chunk) >= limit or chars >= chunk_chars:
                    limit = min(2 * limit, chunk_size)
                    break
                try:
                    item = lines.get(timeout=wait)
                except queue.Empty:
                    break
            if chunk:
                yield predict(chunk)
    finally:
        stop.set()


def record(pred: Prediction, top_k: int | None = None) -> dict[str, object]:
    """The JSON record of a prediction, as `predict --format jsonl` prints it and `grutext serve` returns it."""
    out: dict[str, object]
    if pred.labels is not None:  # multi-label: every label its decision keeps (possibly none), most likely first
        out = {"labels": [{"label": label, "score": round(pred.probs[label], 6)} for label in pred.labels]}
    else:
        out = {"label": pred.label, "score": round(pred.score, 6)}
        if pred.abstained:
            out["abstained"] = True
    if pred.blank:
        out["blank"] = True
    out["probs"] = {label: round(p, 6) for label, p in pred.probs.items()}
    if top_k:
        out["top_k"] = [{"label": label, "score": round(p, 6)} for label, p in pred.top_k(top_k)]
    return out


def format_prediction(pred: Prediction, fmt: str, top_k: int | None = None) -> str:
    """One output line (without the newline)."""
    if fmt == "jsonl":
        return json.dumps(record(pred, top_k), ensure_ascii=False)
    if pred.labels is not None:  # multi-label: the labels kept, joined by ","
        if fmt == "label":
            return ",".join(pred.labels)
        return f"{','.join(pred.labels)}\t{','.join(f'{pred.probs[label]:.6f}' for label in pred.labels)}"
    if pred.abstained:  # the fallback, and the top probability that was too low
        return pred.label if fmt == "label" else f"{pred.label}\t{pred.score:.6f}"
    if fmt == "label":
        return "\t".join(label for label, _ in pred.top_k(top_k)) if top_k else pred.label
    pairs = pred.top_k(top_k) if top_k else [(pred.label, pred.score)]
    return "\t".join(f"{label}\t{score:.6f}" for label, score in pairs)
