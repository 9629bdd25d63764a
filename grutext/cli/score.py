"""`grutext evaluate` and `grutext report`: a checkpoint scored on labelled data, as a table or a page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from grutext.cli.common import cli, data_options, engine_option, handle_errors, headline, stderr_console, use_threads
from grutext.config import INFER_BATCH_SIZE


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint directory."
)
@click.argument("dataset")
@click.option("--split", help="Split to score (default: test, or the only split there is).")
@data_options
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=INFER_BATCH_SIZE, show_default=True, help="Texts per batch."
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Multi-label: use this decision threshold instead of the tuned ones.",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0, 1),
    help="Also show the coverage and accuracy of `predict --min-score` at this value (beside a few standard ones).",
)
@engine_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object on stdout.")
@handle_errors
def evaluate(
    model_dir: Path,
    dataset: str,
    split: str | None,
    batch_size: int,
    threshold: float | None,
    min_score: float | None,
    engine: str,
    as_json: bool,
    **opts: Any,
) -> None:
    """Score a checkpoint on labelled DATASET (same forms as train).

    Shows accuracy, macro-F1, weighted-F1, per-class precision/recall/F1 and a confusion matrix on stderr.

    \b
    Examples:
      grutext evaluate --model models/bbc data/bbc
      grutext evaluate -m models/sst2 data/sst2 --split validation --json
    """
    from grutext.data import load_labelled, pick_split
    from grutext.engine import load_engine
    from grutext.evaluate import evaluate as run_evaluate
    from grutext.readers import split_of

    model = load_engine(model_dir, engine, "cpu", batch_size, threshold)
    use_threads(model)
    data = load_labelled(dataset, **opts)
    name, chosen = pick_split(data, split)
    title = f"{dataset} [{name}]"
    if Path(dataset).is_file():  # a single file is scored whole, whatever split its name implies
        name = split_of(Path(dataset)) or "all"
        title = dataset
    metrics = run_evaluate(model, chosen, min_score)
    if as_json:
        click.echo(json.dumps({"split": name, **metrics}, ensure_ascii=False))
    else:
        render_metrics(stderr_console(), metrics, title)


def render_metrics(console: Any, metrics: dict[str, Any], title: str) -> None:
    """Summary line, per-class table and confusion matrix; label names are shown verbatim (no rich markup)."""
    from rich.markup import escape
    from rich.table import Table

    extra = ""
    if "subset_accuracy" in metrics:
        extra = f", subset accuracy {metrics['subset_accuracy']:.4f}, Hamming loss {metrics['hamming_loss']:.4f}"
    if "ece" in metrics:
        extra += f", ECE {metrics['ece']:.4f}, NLL {metrics['nll']:.4f}"
    console.print(f"{title}: {metrics['n']} texts, {headline(metrics)}{extra}", markup=False, soft_wrap=True)
    per_class = Table(title="per class")
    for column in ("label", "precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="left" if column == "label" else "right")
    for label, row in metrics["per_class"].items():
        cells = (f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
        per_class.add_row(escape(label), *cells)
    console.print(per_class)
    labels = metrics["labels"]
    if "confusion_matrix" in metrics and len(labels) <= 30:
        matrix = Table(title="confusion matrix (rows: true, columns: predicted)")
        matrix.add_column("")
        for label in labels:
            matrix.add_column(escape(label), justify="right")
        for label, row in zip(labels, metrics["confusion_matrix"], strict=True):
            matrix.add_row(escape(label), *(str(v) for v in row))
        console.print(matrix)
    if metrics.get("abstaining"):
        sure = Table(title="answering only when sure (predict --min-score)")
        for column in ("--min-score", "texts answered", "accuracy on them"):
            sure.add_column(column, justify="right")
        for row in metrics["abstaining"]:
            accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
            sure.add_row(f"{row['min_score']:g}", f"{row['coverage']:.1%}", accuracy)
        console.print(sure)


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint directory."
)
@click.argument("dataset", required=False)
@click.option(
    "--output", "-o", required=True, type=click.Path(path_type=Path), help="Folder for index.html and charts."
)
@click.option("--split", help="Split of DATASET to score (default: test, or the only split there is).")
@click.option(
    "--audit",
    "audit_file",
    type=click.Path(path_type=Path),
    help="Add a section listing the suspect labels `grutext audit --format jsonl` wrote to this file.",
)
@data_options
@engine_option
@handle_errors
def report(
    model_dir: Path,
    dataset: str | None,
    output: Path,
    split: str | None,
    audit_file: Path | None,
    engine: str,
    **opts: Any,
) -> None:
    """Write an HTML report with charts: learning curves, confusion matrix, per-class scores, calibration.

    Without DATASET it shows what the checkpoint holds (curves, the test scores stored at training); with
    labelled DATASET the model is run over it, adding the reliability diagram and the most confident mistakes.
    OUT/index.html opens from disk in any browser.

    \b
    Examples:
      grutext report --model models/bbc data/bbc --output reports/bbc
      grutext report -m models/bbc -o reports/bbc-stored
      grutext audit data/bbc --format jsonl > suspects.jsonl && grutext report -m models/bbc --audit suspects.jsonl -o r
    """
    from grutext.engine import load_engine
    from grutext.report import evaluate_split, read_audit, write_report

    audit = read_audit(audit_file) if audit_file is not None else None
    model = load_engine(model_dir, engine)
    use_threads(model)
    evaluation = None
    if dataset is not None:
        from grutext.data import load_labelled, pick_split

        name, chosen = pick_split(load_labelled(dataset, **opts), split)
        evaluation = evaluate_split(model, chosen, f"{dataset} [{name}]")
    page = write_report(model, model.info(), model.metrics, output, evaluation, audit)
    click.echo(f"wrote {page}", err=True)
