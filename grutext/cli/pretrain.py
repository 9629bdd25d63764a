"""`grutext pretrain`: a language model on unlabelled text, for `grutext train --init-from` to start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from grutext.cli import options
from grutext.cli.common import cli, handle_errors
from grutext.cli.train import run_reported, vectors_std_given


@cli.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="Checkpoint directory to write.")
@click.option("--text-column", help="Column (csv/tsv/parquet/hub) or key (jsonl) holding the texts.")
@options.apply(options.PRETRAIN, options.PRETRAIN_SHARED, options.ENCODER)
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists and is not empty.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run saved in --output (same command otherwise).")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as one JSON object on stdout.")
@handle_errors
def pretrain(
    texts: tuple[str, ...],
    output: Path,
    text_column: str | None,
    overwrite: bool,
    resume: bool,
    as_json: bool,
    **opts: Any,
) -> None:
    """Train a language model on unlabelled TEXTS: the tokenizer, the word table and the GRU encoder, reading
    left to right and right to left. `grutext train DATA --init-from DIR` then starts a classifier from it.

    TEXTS are files (plain text, one text a line; csv/tsv/jsonl/parquet with a text column; gzipped too),
    folders (every such file below; each .txt file one text; a dataset's split files: its train split only),
    or hub ids. Duplicates count once; a share of the texts is held out to measure perplexity.

    \b
    Examples:
      grutext pretrain tickets.txt archive.jsonl -o models/tickets-lm
      grutext pretrain reviews/ -o models/reviews-lm --max-minutes 20
      grutext train labelled.csv -o models/reviews --init-from models/reviews-lm
    """
    from grutext.pretraining import pretrain as run_pretrain
    from grutext.settings import pretrain_configs

    vectors_std_given()
    tok_cfg, model_cfg, cfg = pretrain_configs(opts)

    def run(on_event: Any) -> Any:
        return run_pretrain(
            list(texts), tok_cfg, model_cfg, cfg, output, text_column=text_column, overwrite=overwrite,
            resume=resume, on_event=on_event,
        )  # fmt: skip

    run_reported(run, as_json)
