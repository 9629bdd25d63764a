"""`grutext report`: an HTML page with PNG charts about a checkpoint, readable from disk with no server.

    OUT/index.html        headline scores, settings and data, the charts, the most confident mistakes
    OUT/curve.png         training and validation loss, and the validation metric, per epoch (the kept one marked)
    OUT/confusion.png     single-label: the confusion matrix, counts and row-normalised
    OUT/class.png         precision, recall and F1 per class, with support
    OUT/calibration.png   reliability diagram and expected calibration error, before and after (needs DATASET)
    OUT/coverage.png      single-label: accuracy against the share of texts answered (--min-score)
    OUT/label_f1.png      multi-label: each label's F1 against its frequency

Without DATASET the page shows what the checkpoint holds (the curves, and the test scores stored at training);
with it, the model is run over the split and every chart comes from those predictions. matplotlib (Agg) is
imported here only, so no other command pays for it.
"""

from __future__ import annotations

import html
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from grutext.calibration import BINS, abstaining, coverage_curve, temper
from grutext.calibration import reliability as expected_calibration_error
from grutext.data import Split
from grutext.errors import DataError

CALIBRATION_BINS = BINS  # as evaluate counts ECE (grutext.calibration)
MISTAKES_SHOWN = 12
AUDIT_SHOWN = 100  # suspect rows listed in the report's audit section
LABELS_NAMED = 6  # label_f1.png lists this many of the weakest labels by name
DPI = 110
# The page is 1,200 px wide: charts at most this wide (inches, at DPI) show at their natural size, so their
# 8-10 pt text stays 12-15 px on screen. Many labels make a chart taller, never wider.
MAX_WIDTH = 10.0


@dataclass
class Evaluation:
    """What the charts are drawn from: scores, and (with data) the probabilities and truth of every text."""

    where: str  # "test split of DATASET", "the test split at training time", ...
    metrics: dict[str, Any]
    probs: npt.NDArray[np.float64] | None = None  # [N, C]
    truth: npt.NDArray[np.float64] | None = None  # [N] class ids, or [N, C] multi-hot
    texts: list[str] | None = None
    head: Any = None  # the head the truth is indexed by: the model's, plus any label the model does not know


@dataclass
class Chart:
    """One figure of the page: its PNG, and what a reader needs to read it right."""

    title: str
    name: str | None  # the PNG's file name in OUT, or None where there is nothing to draw
    note: str = ""  # a caption under the chart, where the chart alone would mislead


@dataclass
class LossTerms:
    """What the stored training and validation losses are (grutext.training: Task.training_loss, end_epoch), so
    the curves can say it: the training loss is the running mean over an epoch's steps of the sum of every
    head's loss, with label smoothing and dropout on; the validation loss scores the averaged heads' logits
    with neither."""

    heads: int  # 2 with the bigram head: the stored training loss is the sum of both heads' losses
    smoothing: float  # single-label only (multi-label BCE is not smoothed)
    classes: int
    dropout: float
    word_dropout: float

    @classmethod
    def of(cls, info: dict[str, Any]) -> LossTerms:
        model, train = info.get("model") or {}, info.get("train") or {}
        multi = bool(info.get("multi_label"))
        word = train.get("resolved_word_dropout", train.get("word_dropout"))
        return cls(
            heads=2 if model.get("bigram_buckets") else 1,
            smoothing=0.0 if multi else float(train.get("label_smoothing") or 0.0),
            classes=len(info.get("labels") or []),
            dropout=float(model.get("dropout") or 0.0),
            word_dropout=float(word or 0.0),
        )

    def floor(self) -> float:
        """The least training loss a head can reach under label smoothing: the entropy of the smoothed target
        (1 - s + s/C on the true class, s/C on each other)."""
        if not self.smoothing or self.classes < 2:
            return 0.0
        true, other = 1 - self.smoothing + self.smoothing / self.classes, self.smoothing / self.classes
        return float(-true * np.log(true) - (self.classes - 1) * other * np.log(other))

    def training_label(self) -> str:
        parts = [f"mean of the {self.heads} heads' losses"] if self.heads > 1 else []
        if self.smoothing:
            parts.append(f"label smoothing {self.smoothing:g}")
        parts.append("dropout on" if self.dropout or self.word_dropout else "no dropout")
        return f"training loss ({', '.join(parts)})"

    def validation_label(self) -> str:
        heads = "averaged heads' logits, " if self.heads > 1 else ""
        return f"validation loss ({heads}no smoothing, no dropout)"

    def caption(self) -> str:
        """Why the two curves differ, in a sentence or two under the chart."""
        handicaps = []
        if self.smoothing:
            handicaps.append(
                f"label smoothing {self.smoothing:g} (with {self.classes} classes a head's training loss cannot go "
                f"below {self.floor():.3f}, the dotted line)"
            )
        if self.dropout:
            handicaps.append(f"dropout {self.dropout:g}")
        if self.word_dropout:
            handicaps.append(f"word dropout {self.word_dropout:g}")
        stored = (
            f" metrics.json stores the sum of the {self.heads} heads' losses, each on its own logits; the curve "
            f"shows that sum divided by {self.heads}."
            if self.heads > 1
            else ""
        )
        return (
            "The two losses measure different things. Training loss: the mean over each epoch's steps, taken while "
            f"the weights were still changing, with {', '.join(handicaps) or 'no smoothing and no dropout'}."
            f"{stored} Validation loss: the loss of the "
            + ("averaged heads' logits" if self.heads > 1 else "model's logits")
            + " at the end of the epoch, with no smoothing and no dropout. Compare each curve with itself across "
            "epochs, not the two with each other."
        )


def _subplots(rows: int, columns: int, width: float, height: float, **kwargs: Any) -> Any:
    """A figure whose layout engine keeps titles, tick labels and legends outside the data and inside the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(min(width, MAX_WIDTH), height), layout="constrained", **kwargs)


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path.name


def curve_chart(history: list[dict[str, Any]], best_epoch: int, terms: LossTerms, out: Path) -> str | None:
    if not history:
        return None
    from matplotlib.ticker import MaxNLocator

    fig, (losses, scores) = _subplots(1, 2, 10, 4.6)
    epochs = [h["epoch"] for h in history]
    # The stored training loss sums the heads' losses: per head, it is on the validation loss's scale.
    losses.plot(epochs, [h["train_loss"] / terms.heads for h in history], marker="o", label=terms.training_label())
    losses.plot(epochs, [h["val_loss"] for h in history], marker="o", label=terms.validation_label())
    if terms.floor():
        losses.axhline(
            terms.floor(),
            color="tab:blue",
            linestyle=":",
            label=f"least training loss under label smoothing {terms.smoothing:g} ({terms.floor():.3f})",
        )
    metric = history[0]["metric"]
    scores.plot(epochs, [h["val_score"] for h in history], marker="o", color="tab:green", label=f"validation {metric}")
    for ax in (losses, scores):
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"kept: epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        # below the axes, so no line is ever hidden behind it
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=8, frameon=False)
    if len(epochs) == 1:
        losses.set_xlim(epochs[0] - 1, epochs[0] + 1)
        scores.set_xlim(epochs[0] - 1, epochs[0] + 1)
    losses.set_title("loss")
    scores.set_title(f"validation {metric}")
    return _save(fig, out / "curve.png")


def confusion_chart(metrics: dict[str, Any], out: Path) -> str | None:
    matrix = np.asarray(metrics.get("confusion_matrix") or [], dtype=np.float64)
    if matrix.size == 0:
        return None
    labels = metrics["labels"]
    n = len(labels)
    # A panel (inches): the tick labels' room (10 pt is about 0.08 in a character), then 0.3 in a class, capped so
    # the panel fits the page; its height adds the title, the slanted column names and the axis label.
    names = 0.5 + 0.08 * max(len(str(lb)) for lb in labels)
    numbered = n <= 20  # cells small enough to hold their numbers; beyond, a colour bar gives the scale
    cells = max(2.0, min(0.3 * n, MAX_WIDTH - names - (0 if numbered else 0.9)))
    width = max(3.4, names + cells + (0 if numbered else 0.9))  # 3.4 in: room for the title
    height = cells + 0.9 + (0.6 * names if n > 3 else 0.3)
    stacked = 2 * width > MAX_WIDTH  # side by side only while both fit the page's width
    fig, axes = _subplots(2, 1, width, 2 * height) if stacked else _subplots(1, 2, 2 * width, height)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    for ax, values, title, fmt in (
        (axes[0], matrix, "counts", "{:.0f}"),
        (axes[1], normalised, "row-normalised", "{:.2f}"),
    ):
        image = ax.imshow(values, cmap="Blues")
        ax.set_xticks(range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion matrix ({title})")
        if not numbered:
            fig.colorbar(image, ax=ax, shrink=0.6)
        else:
            top = values.max() or 1
            for i in range(n):
                for j in range(n):
                    color = "white" if values[i, j] > top / 2 else "black"
                    ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", color=color, fontsize=8)
    return _save(fig, out / "confusion.png")


def class_chart(metrics: dict[str, Any], out: Path) -> str | None:
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return None
    labels = list(per_class)
    # One row a class, so any number of classes keeps its names level and the chart grows only in height; long
    # names widen it up to the page's width (10 pt is about 0.08 in a character).
    names = [f"{lb} (n={per_class[lb]['support']})" for lb in labels]
    fig, ax = _subplots(1, 1, max(8.0, 6.5 + 0.08 * max(len(n) for n in names)), 1.5 + 0.36 * len(labels))
    y = np.arange(len(labels))
    for k, (key, color) in enumerate((("precision", "tab:blue"), ("recall", "tab:orange"), ("f1", "tab:green"))):
        ax.barh(y + (k - 1) * 0.27, [per_class[lb][key] for lb in labels], 0.27, label=key, color=color)
    ax.set_yticks(y, names)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # the first class on top, as in the tables
    ax.set_xlim(0, 1)
    ax.tick_params(axis="x", labeltop=len(labels) > 12)  # a tall chart has a scale at both ends
    fig.suptitle("per class: precision, recall, F1 (n: texts with the class)")  # centred on the page, not the bars
    fig.legend(loc="outside right upper", frameon=False)  # beside the axes, at the top: it never covers a bar
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out / "class.png")


def calibration_chart(
    confidence: npt.NDArray[np.float64],
    correct: npt.NDArray[np.float64],
    out: Path,
    before: npt.NDArray[np.float64] | None = None,
) -> tuple[str, float, float | None]:
    """The reliability diagram of the calibrated probabilities, and with `before` (the same predictions'
    confidence at temperature 1) the curve before calibration beside it. Returns (file, ECE, ECE before)."""
    ece, rows = expected_calibration_error(confidence, correct)
    fig, ax = _subplots(1, 1, 5, 4.5)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    ax.bar(
        [r[0] for r in rows],
        [r[1] for r in rows],
        width=1 / CALIBRATION_BINS * 0.9,
        alpha=0.7,
        label="accuracy per bin",
    )
    ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", color="tab:red", label="calibrated")
    ece_before = None
    title = f"reliability diagram (ECE {ece:.3f})"
    if before is not None:
        ece_before, rows_before = expected_calibration_error(before, correct)
        xs, ys = [r[0] for r in rows_before], [r[1] for r in rows_before]
        ax.plot(xs, ys, marker="s", color="tab:orange", linestyle=":", label="before calibration")
        title = f"reliability (ECE {ece_before:.3f} before, {ece:.3f} after)"
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=8, frameon=False)  # off the bars
    return _save(fig, out / "calibration.png"), ece, ece_before


def coverage_chart(probs: npt.NDArray[np.float64], truth: npt.NDArray[np.float64], out: Path) -> str:
    """Accuracy against the share of texts answered, answering the most confident first; the --min-score
    values evaluate shows are marked."""
    curve = coverage_curve(probs, truth, points=100)
    fig, ax = _subplots(1, 1, 5.5, 4.5)
    ax.plot([c for c, _ in curve], [a for _, a in curve], color="tab:blue", label="accuracy on the texts answered")
    for row in abstaining(probs, truth):
        if row["accuracy"] is not None and row["coverage"]:
            ax.scatter([row["coverage"]], [row["accuracy"]], color="tab:red", zorder=3)
            ax.annotate(f"{row['min_score']:g}", (row["coverage"], row["accuracy"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("share of texts answered (coverage)")
    ax.set_ylabel("accuracy")
    ax.set_title("answering only when sure (points: --min-score)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=8, frameon=False)
    return _save(fig, out / "coverage.png")


def label_frequency_chart(metrics: dict[str, Any], out: Path) -> str | None:
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return None
    labels = list(per_class)
    support = np.array([per_class[lb]["support"] for lb in labels], dtype=np.float64)
    f1 = np.array([per_class[lb]["f1"] for lb in labels], dtype=np.float64)
    # The weakest labels are named in a list beside the plot rather than on it: with many labels their points
    # share a corner (F1 0, few texts) and names written there would cover each other.
    weakest = sorted(range(len(labels)), key=lambda i: (f1[i], -support[i]))[:LABELS_NAMED]
    fig, (ax, side) = _subplots(1, 2, 9.5, 4.5, width_ratios=[2.3, 1])
    x = np.maximum(support, 0.8)  # a label with no text still shows, at the left edge of the log scale
    ax.scatter(x, f1, alpha=0.6, label="labels")
    ax.scatter(x[weakest], f1[weakest], color="tab:red", label=f"the {len(weakest)} lowest F1 (listed)")
    ax.set_xscale("log")
    ax.set_xlabel("texts with the label (log scale)")
    ax.set_ylabel("F1")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("per-label F1 against label frequency")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=8, frameon=False)
    side.axis("off")
    lines = [f"{labels[i]}: F1 {f1[i]:.2f}, n={int(support[i])}" for i in weakest]
    side.text(0, 1, "lowest F1\n\n" + "\n".join(lines), va="top", ha="left", fontsize=9, transform=side.transAxes)
    return _save(fig, out / "label_f1.png")


def evaluate_split(model: Any, split: Split, where: str) -> Evaluation:
    """Run `model` (either engine) over a labelled split."""

    from grutext.evaluate import unknown_labels_note
    from grutext.head import make_head

    head = make_head(model.labels, model.multi_label, model.decision)
    head.check_rows(split.labels, split.origin)
    probs = np.asarray(model.predict_proba(split.texts), dtype=np.float64)
    metrics = head.score_rows(probs, split.labels, split.origin)
    unknown = metrics.get("unknown_labels", {})
    if unknown:  # counted as errors, as evaluate counts them; the truth needs a column for each
        warnings.warn(unknown_labels_note(split.origin, unknown), stacklevel=2)
        head = head.extended(list(unknown))
        probs = np.concatenate([probs, np.zeros((len(probs), len(unknown)))], axis=1)
    target = head.target_rows(split.labels, split.origin)
    return Evaluation(where, metrics, probs, target.numpy().astype(np.float64), split.texts, head)


def _mistakes(ev: Evaluation, labels: list[str], decision: Any) -> list[dict[str, Any]]:
    assert ev.probs is not None and ev.truth is not None and ev.texts is not None
    rows = []
    if ev.truth.ndim == 1:
        predicted = ev.probs.argmax(axis=1)
        for i in np.flatnonzero(predicted != ev.truth):
            rows.append((ev.probs[i, predicted[i]], i, labels[int(predicted[i])], labels[int(ev.truth[i])]))
    else:
        chosen = decision.apply(ev.probs)
        for i in np.flatnonzero((chosen != (ev.truth > 0.5)).any(axis=1)):
            wrong = np.flatnonzero(chosen[i] != (ev.truth[i] > 0.5))
            confidence = float(np.abs(ev.probs[i, wrong] - 0.5).max() + 0.5)
            shown = ", ".join(labels[c] for c in np.flatnonzero(chosen[i])) or "(none)"
            truth = ", ".join(labels[c] for c in np.flatnonzero(ev.truth[i] > 0.5)) or "(none)"
            rows.append((confidence, i, shown, truth))
    rows.sort(key=lambda r: -r[0])
    return [
        {"text": ev.texts[i], "predicted": p, "true": t, "confidence": float(c)} for c, i, p, t in rows[:MISTAKES_SHOWN]
    ]


def read_audit(path: Path) -> list[dict[str, Any]]:
    """The rows `grutext audit --format jsonl` wrote, for the report's section; a file of anything else is a
    DataError naming the line."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}; pass the output of `grutext audit --format jsonl`") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not {"row", "text", "suggested", "score"} <= set(row):
            raise DataError(f"{path}, line {number}: not a row of `grutext audit --format jsonl`")
        rows.append(row)
    return rows


def write_report(
    model: Any,
    info: dict[str, Any],
    stored: dict[str, Any],
    out: Path,
    ev: Evaluation | None,
    audit: list[dict[str, Any]] | None = None,
) -> Path:
    """Draw the charts and write OUT/index.html. `stored` is the checkpoint's metrics.json; `audit` the rows
    `grutext audit` flagged, for a section of their own."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot write the report to {out}: {exc.strerror}; choose another --output") from None
    if ev is None:
        split = "test" if stored.get("test") else "validation"
        ev = Evaluation(f"the {split} split, as scored at training time", stored.get(split, {}))
    terms = LossTerms.of(info)
    history = stored.get("history", [])
    charts = [
        Chart(
            "Learning curves",
            curve_chart(history, int(stored.get("best_epoch") or 0), terms, out),
            terms.caption() if history else "",
        )
    ]
    multi = bool(info.get("multi_label"))
    if not multi:
        charts.append(Chart("Confusion matrix", confusion_chart(ev.metrics, out)))
    charts.append(Chart("Per class", class_chart(ev.metrics, out)))
    if multi:
        charts.append(Chart("Labels: F1 against frequency", label_frequency_chart(ev.metrics, out)))
    ece = ece_before = None
    mistakes: list[dict[str, Any]] = []
    if ev.probs is not None and ev.truth is not None:
        if multi:
            confidence, correct = ev.probs.reshape(-1), ev.truth.reshape(-1)
        else:
            confidence = ev.probs.max(axis=1)
            correct = (ev.probs.argmax(axis=1) == ev.truth).astype(np.float64)
        temperature = model.meta.temperature
        before = None
        if temperature != 1.0:  # the same predictions at temperature 1: the curve before calibration
            raw = temper(ev.probs, 1.0 / temperature, multi)
            before = raw.reshape(-1) if multi else raw.max(axis=1)
        name, ece, ece_before = calibration_chart(confidence, correct, out, before)
        note = (
            f"One temperature ({temperature:.3g}), fitted on the validation split at training, divides the logits; "
            "it changes no label, only how sure the model says it is."
            if before is not None
            else ""
        )
        charts.append(Chart("Calibration", name, note))
        if not multi:
            charts.append(Chart("Answering only when sure", coverage_chart(ev.probs, ev.truth, out)))
        mistakes = _mistakes(ev, ev.head.labels, ev.head.decision)
    page = _page(info, ev, charts, ece, mistakes, ece_before, audit)
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"


def _audit_section(audit: list[dict[str, Any]]) -> str:
    """The rows `grutext audit` flagged, the most suspect first (texts escaped, the first AUDIT_SHOWN)."""
    shown = "".join(
        f"<tr><td>{int(r['row'])}</td><td>{html.escape(str(r['text'])[:300])}</td>"
        f"<td>{html.escape(_joined(r.get('label', r.get('labels'))))}</td>"
        f"<td>{html.escape(_joined(r['suggested']))}</td><td>{float(r['score']):.3f}</td></tr>"
        for r in audit[:AUDIT_SHOWN]
    )
    more = f" (the first {AUDIT_SHOWN} shown)" if len(audit) > AUDIT_SHOWN else ""
    return (
        f"<h2>Suspect labels</h2><p>{len(audit)} training rows whose label the out-of-sample models confidently "
        f"put elsewhere (grutext audit: k-fold confident learning), the most suspect first{more}.</p>"
        "<table class='mistakes'><tr><th>row</th><th>text</th><th>given</th><th>suggested</th><th>score</th></tr>"
        f"{shown}</table>"
    )


def _joined(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _page(
    info: dict[str, Any],
    ev: Evaluation,
    charts: list[Chart],
    ece: float | None,
    mistakes: list[dict[str, Any]],
    ece_before: float | None = None,
    audit: list[dict[str, Any]] | None = None,
) -> str:
    m, t = info["model"], info["tokenizer"]
    scores = [
        (k.replace("_", " "), f"{v:.4f}" if isinstance(v, float) else str(v))
        for k, v in ev.metrics.items()
        if k
        in ("n", "accuracy", "macro_f1", "weighted_f1", "micro_f1", "samples_f1", "subset_accuracy", "hamming_loss")
    ]
    if ece is not None:
        scores.append(("expected calibration error", f"{ece:.4f}"))
    if ece_before is not None:
        scores.append(("ECE before calibration", f"{ece_before:.4f}"))
    data = info.get("data", {})
    settings = [
        ("labels", ", ".join(info["labels"])),
        ("parameters", f"{info['parameters']:,}"),
        (
            "architecture",
            f"embedding {m['embed_dim']} -> {'bi' if m['bidirectional'] else 'uni'}directional "
            f"{m['cell']} {m['layers']}x{m['hidden_size']} -> {m['pooling']} pooling -> linear",
        ),
        ("tokenizer", f"{t['kind']}, {info['shape']['vocab_size']:,} tokens, max length {t['max_length']}"),
        ("training data", f"{data.get('source', '?')} {data.get('sizes', '')}"),
        ("trained", f"{info.get('train_seconds')} s, kept epoch {info.get('best_epoch')}"),
    ]
    if info.get("multi_label") and info.get("decision"):
        d = info["decision"]
        thresholds = (
            d["threshold"]
            if d.get("threshold") is not None
            else ", ".join(f"{k} {v:.2f}" for k, v in (d.get("per_label") or {}).items())
        )
        settings.append(("decision thresholds", str(thresholds)))
    figures = "".join(
        f'<figure><img src="{html.escape(c.name)}" alt="{html.escape(c.title)}">'
        f"<figcaption>{html.escape(c.title)}"
        + (f"<p class='why'>{html.escape(c.note)}</p>" if c.note else "")
        + "</figcaption></figure>"
        for c in charts
        if c.name
    )
    if ev.probs is None:
        figures += (
            "<p class='note'>Pass labelled DATASET for the reliability diagram and the most confident mistakes.</p>"
        )
    mistake_rows = "".join(
        f"<tr><td>{html.escape(x['text'][:300])}</td><td>{html.escape(x['true'])}</td><td>{html.escape(x['predicted'])}</td>"
        f"<td>{x['confidence']:.3f}</td></tr>"
        for x in mistakes
    )
    mistakes_html = (
        "<h2>Most confident mistakes</h2><table class='mistakes'><tr><th>text</th><th>true</th><th>predicted</th>"
        f"<th>confidence</th></tr>{mistake_rows}</table>"
        if mistakes
        else ""
    )
    audit_html = _audit_section(audit) if audit is not None else ""
    title = html.escape(f"grutext report: {info['path']}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }}
h1 {{ overflow-wrap: anywhere; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; white-space: nowrap; }} td {{ overflow-wrap: anywhere; }}
figure {{ display: inline-block; vertical-align: top; margin: 0.5em; max-width: calc(100% - 1em); }}
img {{ display: block; max-width: 100%; height: auto; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 0.9em; }} .note {{ color: #777; }}
figcaption .why {{ max-width: 80ch; margin: 0.3em 0 0; }}
table.mistakes td:first-child {{ max-width: 600px; }}
</style></head><body>
<h1>{title}</h1>
<h2>Scores on {html.escape(ev.where)}</h2>{_table(scores)}
<h2>Model and data</h2>{_table(settings)}
<h2>Charts</h2>{figures}
{mistakes_html}
{audit_html}
</body></html>
"""
