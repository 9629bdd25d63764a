"""`grutext predict`, `grutext explain` and `grutext serve`: a checkpoint run over new texts."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from grutext.cli.common import cli, engine_option, handle_errors, quiet_exit, stopped_quietly, use_threads
from grutext.config import DEVICES, INFER_BATCH_SIZE, INPUT_FORMATS
from grutext.errors import ConfigError, interrupt_code


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint directory."
)
@click.argument("files", nargs=-1, type=str)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["label", "tsv", "jsonl"]),
    default="label",
    show_default=True,
    help="label: the label; tsv: label and probability; jsonl: label, score and all probabilities.",
)
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Show the K most likely labels.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Multi-label: print labels with a probability of at least this (instead of the tuned thresholds).",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0, 1),
    help="Answer only when sure: a text whose top probability is below this gets the --fallback label "
    "(jsonl marks it abstained and keeps the probabilities). `grutext evaluate` shows the accuracy and coverage "
    "each value gives.",
)
@click.option(
    "--fallback",
    default="",
    help="With --min-score: the label printed for texts below it, and for blank lines, which are never "
    "answered (default: an empty label).",
)
@click.option("--text-column", help="Column (csv/tsv) or key (jsonl) holding the texts.")
@click.option(
    "--input-format",
    type=click.Choice(INPUT_FORMATS),
    default="auto",
    show_default=True,
    help="How to read inputs; auto goes by file extension, stdin is text.",
)
@click.option(
    "--binary-ok",
    is_flag=True,
    help="Label input that holds NUL bytes (refused by default: it is most likely a binary file, not text).",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=INFER_BATCH_SIZE, show_default=True, help="Texts per batch."
)
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True, help="Where to run the model.")
@engine_option
@handle_errors
def predict(
    model_dir: Path,
    files: tuple[str, ...],
    fmt: str,
    top_k: int | None,
    threshold: float | None,
    min_score: float | None,
    fallback: str,
    text_column: str | None,
    input_format: str,
    binary_ok: bool,
    batch_size: int,
    device: str,
    engine: str,
) -> None:
    """Label texts from FILES (one text per line; - is stdin), or from stdin when no FILES are given.

    Writes exactly one line per input line, in input order, as the input streams. A blank line gets no
    label (an empty line; jsonl marks it "blank").

    \b
    Examples:
      cat texts.txt | grutext predict --model models/bbc
      grutext predict -m models/bbc news.txt --format jsonl --top-k 2
      grutext predict -m models/bbc reviews.csv --text-column body --format tsv
      grutext predict -m models/sst2 reviews.txt --min-score 0.9 --fallback review
    """
    from grutext.engine import load_engine
    from grutext.errors import UsageError
    from grutext.inputs import iter_texts
    from grutext.prediction import check_abstain, format_prediction

    if fallback and min_score is None:
        raise UsageError("--fallback is the label for texts below --min-score; give --min-score too")
    predictor = load_engine(model_dir, engine, device, batch_size, threshold)
    try:
        check_abstain(
            min_score, fallback, predictor.multi_label, ("--min-score", "--fallback"), "use --threshold instead"
        )
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    use_threads(predictor)
    if top_k is not None:
        top_k = min(top_k, len(predictor.labels))
    trained_column = predictor.config.get("data", {}).get("text_column")
    texts = iter_texts(files, input_format, text_column, trained_column, binary_ok)
    out = sys.stdout
    try:
        for chunk in predictor.stream(texts, min_score=min_score, fallback=fallback):
            out.write("".join(format_prediction(p, fmt, top_k) + "\n" for p in chunk))
            out.flush()
    except BrokenPipeError:
        quiet_exit(0)
    except KeyboardInterrupt as exc:
        stopped_quietly("predict", interrupt_code(exc))


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint directory."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; 0.0.0.0 serves every interface (only this machine by default).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Server processes.")
@engine_option
@click.option(
    "--max-body",
    type=click.IntRange(min=1),
    default=8 * 2**20,
    show_default=True,
    help="Largest request body in bytes (larger: 413).",
)
@click.option(
    "--max-texts",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Most texts in one request (more: 413).",
)
@handle_errors
def serve(model_dir: Path, host: str, port: int, workers: int, engine: str, max_body: int, max_texts: int) -> None:
    """Serve a checkpoint over HTTP: POST /predict, GET /health, GET /info (JSON).

    POST /predict takes {"texts": [...], "top_k": K} and returns {"predictions": [...]}, each record what
    `predict --format jsonl` prints. Requests that arrive together share one forward pass. SIGTERM or
    Ctrl-C drains the requests in flight and exits 0.

    \b
    Examples:
      grutext serve --model models/bbc
      grutext serve -m models/bbc --port 9000 --workers 2
      curl -s localhost:8000/predict -d '{"texts": ["The striker scored twice."]}'
    """
    from grutext.serve import ServeConfig, run

    run(ServeConfig(str(model_dir), engine, max_body, max_texts), host, port, workers)


# ------------------------------------------------------------------------------------------- explain


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint directory."
)
@click.argument("files", nargs=-1, type=str)
@click.option("--label", help="Explain this label (default: each text's predicted label).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="text: tokens coloured by attribution (scores in brackets without colour); jsonl: one record per text.",
)
@click.option(
    "--html", "html_file", type=click.Path(path_type=Path), help="Also write a page with the texts highlighted."
)
@click.option("--text-column", help="Column (csv/tsv) or key (jsonl) holding the texts.")
@click.option(
    "--input-format", type=click.Choice(INPUT_FORMATS), default="auto", show_default=True, help="As for predict."
)
@engine_option
@handle_errors
def explain(
    model_dir: Path,
    files: tuple[str, ...],
    label: str | None,
    fmt: str,
    html_file: Path | None,
    text_column: str | None,
    input_format: str,
    engine: str,
) -> None:
    """Show which tokens drove each prediction (occlusion: how far the label's probability falls when a token
    is deleted). Texts come from FILES or stdin, one per line, as for predict.

    \b
    Examples:
      echo "The striker scored twice in the final." | grutext explain --model models/bbc
      grutext explain -m models/sst2 reviews.txt --format jsonl --label negative
      grutext explain -m models/chn comments.txt --html explained.html
    """
    from grutext.engine import load_engine
    from grutext.explain import as_json, page, plain
    from grutext.explain import explain as run_explain
    from grutext.inputs import iter_texts

    model = load_engine(model_dir, engine)
    use_threads(model)
    trained_column = model.config.get("data", {}).get("text_column")
    texts = iter_texts(files, input_format, text_column, trained_column, False)
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    console = None
    if color:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
    shown = []
    try:
        for chunk in _chunks(texts, 256):
            explained = run_explain(model, chunk, label)
            for e in explained:
                if fmt == "jsonl":
                    click.echo(as_json(e))
                elif console is not None:
                    console.print(_coloured(e))
                else:
                    click.echo(plain(e))
            sys.stdout.flush()
            if html_file is not None:
                shown.extend(explained)
    except BrokenPipeError:
        quiet_exit(0)
    if html_file is not None:
        try:
            html_file.write_text(page(shown), encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(
                f"cannot write {html_file}: {exc.strerror}; choose another --html path"
            ) from None
        click.echo(f"wrote {html_file}", err=True)


def _coloured(explanation: Any) -> str:
    """An explanation as rich markup: each token on a background from red (against the label) to green (for),
    on one scale for every text."""
    if explanation.blank:
        return ""
    from rich.markup import escape

    from grutext.explain import tint

    parts, cursor = [], 0
    for t in explanation.tokens:  # one scale for every text, as on the --html page
        r, g, b = tint(t.attribution)
        parts.append(escape(explanation.text[cursor : t.start]) + f"[black on rgb({r},{g},{b})]{escape(t.token)}[/]")
        cursor = t.end
    head = escape(f"{explanation.label} ({explanation.score:.3f}): ")
    return head + "".join(parts) + escape(explanation.text[cursor:])


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -------------------------------------------------------------------------------------------- report
