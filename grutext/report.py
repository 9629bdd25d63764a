"""`grutext report`: an HTML page with PNG charts about a checkpoint, readable from disk with no server.

    OUT/index.html        headline scores, settings and data, the charts, the most confident mistakes
    OUT/curve.png         training and validation loss, and the validation metric, per epoch (the kept one marked)
    OUT/confusion.png     single-label: the confusion matrix, counts and row-normalised
    OUT/class.png         precision, recall and F1 per class, with support
    OUT/calibration.png   reliability diagram and expected calibration error (needs DATASET)
    OUT/label_f1.png      multi-label: each label's F1 against its frequency

Without DATASET the page shows what the checkpoint holds (the curves, and the test scores stored at training);
with it, the model is run over the split and every chart comes from those predictions. matplotlib (Agg) is
imported here only, so no other command pays for it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from grutext.data import Split
from grutext.errors import DataError

CALIBRATION_BINS = 10
MISTAKES_SHOWN = 12


@dataclass
class Evaluation:
    """What the charts are drawn from: scores, and (with data) the probabilities and truth of every text."""

    where: str  # "test split of DATASET", "the test split at training time", ...
    metrics: dict[str, Any]
    probs: npt.NDArray[np.float64] | None = None  # [N, C]
    truth: npt.NDArray[np.float64] | None = None  # [N] class ids, or [N, C] multi-hot
    texts: list[str] | None = None


def expected_calibration_error(
    confidence: npt.NDArray[np.float64], correct: npt.NDArray[np.float64], bins: int = CALIBRATION_BINS
) -> tuple[float, list[tuple[float, float, int]]]:
    """ECE over equal-width confidence bins, and per bin (mean confidence, accuracy, count)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        if count:
            conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
            ece += count / len(confidence) * abs(acc - conf)
            rows.append((conf, acc, count))
    return ece, rows


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, 1, figsize=(width, height))


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _subplots(columns: int, width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=(width, height))


def curve_chart(history: list[dict[str, Any]], best_epoch: int, out: Path) -> str | None:
    if not history:
        return None
    fig, (losses, scores) = _subplots(2, 10, 3.6)
    epochs = [h["epoch"] for h in history]
    losses.plot(epochs, [h["train_loss"] for h in history], marker="o", label="training loss")
    losses.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation loss")
    metric = history[0]["metric"]
    scores.plot(epochs, [h["val_score"] for h in history], marker="o", color="tab:green", label=f"validation {metric}")
    for ax in (losses, scores):
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"kept: epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    losses.set_title("loss")
    scores.set_title(f"validation {metric}")
    return _save(fig, out / "curve.png")


def confusion_chart(metrics: dict[str, Any], out: Path) -> str | None:
    matrix = np.asarray(metrics.get("confusion_matrix") or [], dtype=np.float64)
    if matrix.size == 0:
        return None
    labels = metrics["labels"]
    size = min(14.0, 4 + 0.45 * len(labels))
    fig, axes = _subplots(2, 2 * size, size)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    for ax, values, title, fmt in (
        (axes[0], matrix, "counts", "{:.0f}"),
        (axes[1], normalised, "row-normalised", "{:.2f}"),
    ):
        ax.imshow(values, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion matrix ({title})")
        if len(labels) <= 20:
            top = values.max() or 1
            for i in range(len(labels)):
                for j in range(len(labels)):
                    color = "white" if values[i, j] > top / 2 else "black"
                    ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", color=color, fontsize=8)
    return _save(fig, out / "confusion.png")


def class_chart(metrics: dict[str, Any], out: Path) -> str | None:
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return None
    labels = list(per_class)
    fig, ax = _figure(min(18.0, 4 + 0.5 * len(labels)), 4)
    x = np.arange(len(labels))
    for k, (key, color) in enumerate((("precision", "tab:blue"), ("recall", "tab:orange"), ("f1", "tab:green"))):
        ax.bar(x + (k - 1) * 0.27, [per_class[lb][key] for lb in labels], 0.27, label=key, color=color)
    ax.set_xticks(x, [f"{lb}\n(n={per_class[lb]['support']})" for lb in labels], rotation=45 if len(labels) > 8 else 0)
    ax.set_ylim(0, 1.05)
    ax.set_title("per class: precision, recall, F1 (support below each class)")
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "class.png")


def calibration_chart(
    confidence: npt.NDArray[np.float64], correct: npt.NDArray[np.float64], out: Path
) -> tuple[str, float]:
    ece, rows = expected_calibration_error(confidence, correct)
    fig, ax = _figure(5, 4.5)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    ax.bar(
        [r[0] for r in rows],
        [r[1] for r in rows],
        width=1 / CALIBRATION_BINS * 0.9,
        alpha=0.7,
        label="accuracy per bin",
    )
    ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", color="tab:red")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"reliability diagram (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    return _save(fig, out / "calibration.png"), ece


def label_frequency_chart(metrics: dict[str, Any], out: Path) -> str | None:
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return None
    support = np.array([row["support"] for row in per_class.values()], dtype=np.float64)
    f1 = np.array([row["f1"] for row in per_class.values()])
    fig, ax = _figure(7, 4.5)
    ax.scatter(np.maximum(support, 0.8), f1, alpha=0.7)
    for (label, row), s in zip(per_class.items(), support, strict=True):
        if s == support.max() or row["f1"] == f1.min():
            ax.annotate(label, (max(s, 0.8), row["f1"]), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("texts with the label (log scale)")
    ax.set_ylabel("F1")
    ax.set_title("per-label F1 against label frequency")
    ax.grid(alpha=0.3)
    return _save(fig, out / "label_f1.png")


def evaluate_split(model: Any, split: Split, where: str) -> Evaluation:
    """Run `model` (either engine) over a labelled split."""
    import torch

    from grutext.head import make_head

    head = make_head(model.labels, model.multi_label, model.decision)
    target = head.targets(split)
    probs = np.asarray(model.predict_proba(split.texts), dtype=np.float64)
    metrics = head.metrics(torch.as_tensor(probs), target)
    return Evaluation(where, metrics, probs, target.numpy().astype(np.float64), split.texts)


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


def write_report(model: Any, info: dict[str, Any], stored: dict[str, Any], out: Path, ev: Evaluation | None) -> Path:
    """Draw the charts and write OUT/index.html. `stored` is the checkpoint's metrics.json."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot write the report to {out}: {exc.strerror}; choose another --output") from None
    if ev is None:
        split = "test" if stored.get("test") else "validation"
        ev = Evaluation(f"the {split} split, as scored at training time", stored.get(split, {}))
    charts: list[tuple[str, str | None]] = [
        ("Learning curves", curve_chart(stored.get("history", []), int(stored.get("best_epoch") or 0), out))
    ]
    multi = bool(info.get("multi_label"))
    if not multi:
        charts.append(("Confusion matrix", confusion_chart(ev.metrics, out)))
    charts.append(("Per class", class_chart(ev.metrics, out)))
    if multi:
        charts.append(("Labels: F1 against frequency", label_frequency_chart(ev.metrics, out)))
    ece = None
    mistakes: list[dict[str, Any]] = []
    if ev.probs is not None and ev.truth is not None:
        if multi:
            confidence, correct = ev.probs.reshape(-1), ev.truth.reshape(-1)
        else:
            confidence = ev.probs.max(axis=1)
            correct = (ev.probs.argmax(axis=1) == ev.truth).astype(np.float64)
        name, ece = calibration_chart(confidence, correct, out)
        charts.append(("Calibration", name))
        mistakes = _mistakes(ev, model.labels, model.decision)
    page = _page(info, ev, charts, ece, mistakes)
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _page(
    info: dict[str, Any],
    ev: Evaluation,
    charts: list[tuple[str, str | None]],
    ece: float | None,
    mistakes: list[dict[str, Any]],
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
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(title)}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for title, name in charts
        if name
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
    title = html.escape(f"grutext report: {info['path']}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 0.9em; }} .note {{ color: #777; }}
table.mistakes td:first-child {{ max-width: 600px; }}
</style></head><body>
<h1>{title}</h1>
<h2>Scores on {html.escape(ev.where)}</h2>{_table(scores)}
<h2>Model and data</h2>{_table(settings)}
<h2>Charts</h2>{figures}
{mistakes_html}
</body></html>
"""
