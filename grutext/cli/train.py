"""`grutext train` and `grutext tune`: their options, and the rendering of training progress on stderr."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from grutext.cli import options
from grutext.cli.common import F, cli, data_options, handle_errors, headline, quiet_exit, stderr_console
from grutext.errors import interrupt_code


@cli.command()
@click.argument("dataset")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="Checkpoint directory to write.")
@data_options
@options.apply(options.RUN, options.TOKENIZER, options.ENCODER, options.CLASSIFIER, options.START, options.STREAMING)
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists and is not empty.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run saved in --output (same command otherwise).")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as one JSON object on stdout.")
@handle_errors
def train(dataset: str, output: Path, as_json: bool, overwrite: bool, resume: bool, **opts: Any) -> None:
    """Train a tokenizer and a GRU classifier on DATASET and save a checkpoint.

    DATASET is a Hugging Face hub id, a csv/tsv/json/jsonl/parquet/fastText .txt file (or .gz of one),
    a directory of train/validation/test files, a folder-per-class directory, or a save_to_disk folder.

    \b
    Examples:
      grutext train data/bbc --output models/bbc
      grutext train reviews.csv --text-column body --label-column stars -o models/stars
      grutext train data/chnsenticorp -o models/chn --epochs 5
      grutext train imdb --output models/imdb --max-length 400
      grutext train data/bbc -o models/bbc --resume     # after Ctrl-C: continue where it stopped
    """
    from grutext.settings import configs_from_options
    from grutext.training import train as run_train

    vectors_std_given()
    opts["unlabeled"] = list(opts["unlabeled"]) or None
    spec, tok_cfg, model_cfg, cfg = configs_from_options(dataset, opts)
    if opts["streaming"]:
        _keep_heap_flat()
    run_reported(
        lambda on_event: run_train(
            spec, tok_cfg, model_cfg, cfg, output, overwrite=overwrite, resume=resume, on_event=on_event
        ),
        as_json,
    )


def vectors_std_given() -> None:
    """--vectors-std without --vectors is a usage error."""
    context = click.get_current_context()
    if context.params.get("vectors") is None and context.get_parameter_source("vectors_std") is (
        click.core.ParameterSource.COMMANDLINE
    ):
        raise click.UsageError("--vectors-std rescales pretrained vectors; pass --vectors FILE with it")


def run_reported(run: Any, as_json: bool) -> None:
    """Run a training command (`run(on_event)` -> a TrainResult) with its progress on stderr: a signal ends it
    with one line and 128 + its number, and --json prints the final metrics on stdout."""
    from grutext.errors import Interrupted
    from grutext.events import ModelBuilt

    reporter = TrainReporter(stderr_console())

    def on_event(event: Any) -> None:
        if isinstance(event, ModelBuilt):
            # The data, the token ids and the model live from here to the end of the run: frozen, they are
            # skipped by the collector's full passes (one epoch of sst2 ran six, 0.46 s in all).
            gc.freeze()
        reporter(event)

    try:
        with reporter:
            result = run(on_event)
    except Interrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt as exc:  # before training started, or a second Ctrl-C that stops at once
        click.echo("interrupted; nothing was saved", err=True)
        sys.exit(interrupt_code(exc))
    if as_json and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        click.echo(json.dumps({"path": str(result.path), **result.metrics}, ensure_ascii=False))


def _keep_heap_flat() -> None:
    """Streaming promises flat memory; glibc's malloc alone does not keep it. Its mmap threshold rises to the
    largest block freed so far, after which the scan's [T, B, H] buffers (a few MB each) come from the heap
    and fragment it: peak RSS reached 1.7 GB on long texts, against 0.5 GB live. A fixed 4 MiB threshold maps
    such blocks and returns them on free (measured: 1.0 GiB peak, 14% fewer tokens/s on 200-token texts), and
    a high trim threshold stops the heap top from being trimmed and faulted back at every step. Process-wide
    state, so the command line sets it, not the library. A no-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    mallopt(m_mmap_threshold, 4 * 2**20)
    mallopt(m_trim_threshold, 256 * 2**20)


class TrainReporter:
    """Renders training events on stderr: a rich progress bar on a terminal, plain log lines otherwise."""

    LOG_EVERY_S = 10.0

    def __init__(self, console: Any) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress: Any = None
        self.task: Any = None
        self.last_log = 0.0
        self.val_score = "-"

    def __enter__(self) -> TrainReporter:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  val {task.fields[val]}  {task.fields[speed]} ex/s"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def log(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def __call__(self, event: Any) -> None:
        try:
            self.render(event)
        except BrokenPipeError:  # nobody reads the log any more (`2>&1 | head`): train on, quietly
            self.console.quiet = True
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    def render(self, event: Any) -> None:
        from grutext import events as t

        if isinstance(event, t.DiscardingResumable):
            self.log(
                f"--overwrite: discarding the interrupted run saved in {event.path} (stopped at epoch {event.epoch}, "
                f"step {event.step}; --resume would have continued it)"
            )
        elif isinstance(event, t.DataLoaded):
            sizes = ", ".join(f"{k} {v}" for k, v in event.sizes.items())
            self.log(
                f"data: {event.source} ({sizes}); text column {event.text_column!r}, label column "
                f"{event.label_column!r}; {len(event.labels)} labels; validation: {event.validation_from}"
            )
            for split, n in event.skipped.items():
                if n:
                    self.log(f"skipped {n} bad row(s) in {split} (--on-bad-row skip)")
        elif isinstance(event, t.UnknownLabels):
            from grutext.evaluate import unknown_labels_note

            left_out = "left out of validation: the training split lacks them"
            note = unknown_labels_note(event.origin, event.labels, *([left_out] if event.split == "validation" else []))
            self.log(f"Warning: {note}")
        elif isinstance(event, t.TokenizerTrained):
            self.log(
                f"tokenizer: {event.kind}, {event.vocab_size} tokens, {event.mean_tokens:.1f} tokens per text, "
                f"{event.truncated:.1%} truncated ({event.seconds:.1f}s)"
            )
        elif isinstance(event, t.VectorsLoaded):
            v = event.summary
            self.log(
                f"vectors: {v['file']} ({v['format']}, {v['rows_read']:,} rows of {v['dim']}, {v['seconds']:.1f}s): "
                f"{v['vocab_coverage']:.1%} of the vocabulary's rows ({v['rows_found']:,} of {v['vocab_rows']:,}, "
                f"{v['rare_words_added']:,} rare training words added), {v['token_coverage']:.1%} of training tokens"
            )
        elif isinstance(event, t.ModelBuilt):
            self.log(f"model: {event.parameters:,} parameters on {event.device} ({event.backend})")
            if event.resumed_at is not None:
                self.log(f"resuming at epoch {event.resumed_at[0]}, after step {event.resumed_at[1]}")
        elif isinstance(event, t.EpochStarted):
            self.last_log = time.monotonic()
            if self.progress is not None:
                if self.task is not None:
                    self.progress.remove_task(self.task)
                self.task = self.progress.add_task(
                    f"epoch {event.epoch}/{event.epochs}",
                    total=event.steps,
                    loss="-",
                    val=self.val_score,
                    speed="-",
                )
        elif isinstance(event, t.StepDone):
            if self.progress is not None:
                self.progress.update(
                    self.task,
                    completed=event.step,
                    loss=f"{event.loss:.4f}",
                    speed=f"{event.examples_per_s:,.0f}",
                )
            elif time.monotonic() - self.last_log >= self.LOG_EVERY_S:
                self.last_log = time.monotonic()
                self.log(
                    f"epoch {event.epoch} step {event.step}/{event.steps} loss {event.loss:.4f} "
                    f"{event.examples_per_s:,.0f} ex/s"
                )
        elif isinstance(event, t.EpochDone):
            self.val_score = f"{event.metric} {event.val_score:.4f}"
            mark = " *" if event.improved else ""
            shown = event.val_macro_f1 is not None and event.metric != "macro_f1"
            macro = f"val macro-F1 {event.val_macro_f1:.4f}, " if shown else ""
            self.log(
                f"epoch {event.epoch}: train loss {event.train_loss:.4f}, val loss {event.val_loss:.4f}, "
                f"val {event.metric.replace('_f1', '-F1')} {event.val_score:.4f}, {macro}"
                f"{event.seconds:.1f}s, {event.examples_per_s:,.0f} ex/s, {event.tokens_per_s:,.0f} tok/s{mark}"
            )
        elif isinstance(event, t.Finished):
            m = event.metrics
            if "perplexity" in m:  # a language model
                scores = f"held-out perplexity {m['perplexity']:.1f}"
            else:
                scores = f"validation {headline(m['validation'])}"
            if "test" in m:
                scores += f"; test {headline(m['test'])}"
            if "previous_test" in m:
                scores += f"; the previous data's test {headline(m['previous_test'])}"
            self.log(f"{event.stopped}; kept epoch {event.best_epoch}")
            self.log(f"saved {event.path}: {scores}")
        elif isinstance(event, t.StageStarted):
            added = f", {event.pseudo_labelled:,} pseudo-labelled texts added" if event.pseudo_labelled else ""
            reused = ": finished by the interrupted run, reused" if event.reused else ""
            self.log(f"--unlabeled stage: {event.stage}{added}{reused}")
        elif isinstance(event, t.RoundKept):
            by_round = [
                f"round {r['round']} {r['validation']:.4f}" + (f" (test {r['test']:.4f})" if "test" in r else "")
                for r in event.rounds
            ]
            self.log(f"self-training, validation by round: {', '.join(by_round)}; kept round {event.kept}")
            self.log(f"saved {event.path}: round {event.kept}'s classifier")
        elif isinstance(event, t.CorpusRead):
            self.log(
                f"corpus: {', '.join(event.sources)}: {event.read:,} texts read, {event.texts:,} distinct to train on, "
                f"{event.held_out:,} held out for perplexity"
            )


# ---------------------------------------------------------------------------------------------- tune


def settings_options(set_help: str, seed_help: str) -> Callable[[F], F]:
    """The data options, --vectors, --set KEY=VALUE and --seed: how tune and audit take train's settings."""

    def apply(func: F) -> F:
        for option in reversed(
            [
                click.option(
                    "--vectors", type=click.Path(path_type=str), default=None, help="Pretrained vectors, as for train."
                ),
                click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help=set_help),
                click.option("--seed", type=click.IntRange(min=0), default=13, show_default=True, help=seed_help),
            ]
        ):
            func = option(func)
        return data_options(func)

    return apply


@cli.command()
@click.argument("dataset")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="Checkpoint directory to write.")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Most trials (default: until --timeout).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Minutes to search; a trial still running then stops, unkept.",
)
@settings_options(
    "Fix a train setting instead of searching it (named like its flag: --set epochs=10 --set tokenizer=bpe).",
    "Seed of the search and runs.",
)
@click.option(
    "--carves",
    type=click.IntRange(min=1),
    default=None,
    help="Score each trial as the mean over this many carves of train into train and validation (default: 3 "
    "under 20,000 training rows without a validation split, else 1).",
)
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists and is not empty.")
@click.option("--json", "as_json", is_flag=True, help="Print the best trial as one JSON object on stdout.")
@handle_errors
def tune(
    dataset: str,
    output: Path,
    trials: int | None,
    timeout: float,
    vectors: str | None,
    settings: tuple[str, ...],
    seed: int,
    carves: int | None,
    overwrite: bool,
    as_json: bool,
    **opts: Any,
) -> None:
    """Search the training settings for the best validation score in a time box, and keep the best model.

    Optuna's TPE sampler proposes learning rate, dropout, sizes, pooling, batch size, word dropout, weight
    decay and depth; trials that trail the others are pruned early. The best model is a normal checkpoint
    in --output, with tuning.json (every trial) beside its files. Only validation scores choose.

    \b
    Examples:
      grutext tune data/bbc --output models/bbc-tuned --timeout 10
      grutext tune reviews.csv -o models/reviews --vectors glove.6B.50d.txt --trials 30 --timeout 60
      grutext tune data/bbc -o models/bbc-tuned --set epochs=8 --set tokenizer=bpe
    """
    from grutext.tune import tune as run_tune

    fixed = _fixed_settings(opts, vectors, settings)
    console = stderr_console()

    def on_trial(done: Any) -> None:
        score = f"{done.score:.4f}" if done.score is not None else "-"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in done.params.items())
        console.print(
            f"trial {done.number}: {done.state}, validation {score} after {done.epochs} epochs ({done.seconds:.0f}s); "
            f"best {done.best:.4f}; {params}"
            if done.best is not None
            else f"trial {done.number}: {done.state}",
            markup=False,
            soft_wrap=True,
        )

    def on_epoch(number: int, done: Any, carve: int | None = None) -> None:
        which = f"trial {number}" + (f" (carve {carve})" if carve else "")
        console.print(
            f"{which}, epoch {done.epoch}: validation {done.metric.replace('_f1', '-F1')} "
            f"{done.val_score:.4f} ({done.seconds:.0f}s)",
            markup=False,
            soft_wrap=True,
        )

    from grutext.errors import Interrupted

    try:
        result = run_tune(
            dataset, output, trials=trials, timeout=timeout * 60, seed=seed, fixed=fixed, overwrite=overwrite,
            on_trial=on_trial, on_epoch=on_epoch, carves=carves,
        )  # fmt: skip
    except Interrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(128 + exc.signum)
    console.print(f"kept trial with validation {result.best_score:.4f} in {result.path}", markup=False)
    if as_json:
        click.echo(json.dumps({"path": str(result.path), "score": result.best_score, "params": result.best_params}))


def _fixed_settings(opts: dict[str, Any], vectors: str | None, settings: tuple[str, ...]) -> dict[str, Any]:
    """The data options given, --vectors and each --set KEY=VALUE, named as train's flags name them."""
    fixed: dict[str, Any] = {k: v for k, v in opts.items() if v is not None and not (k == "on_bad_row" and v == "fail")}
    if opts.get("encoding") == "utf-8":
        fixed.pop("encoding")
    if vectors is not None:
        fixed["vectors"] = vectors
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"--set takes KEY=VALUE, got {item!r}")
        fixed[key.strip().replace("-", "_")] = _parse_setting(value.strip())
    return fixed


# --------------------------------------------------------------------------------------------- audit


@cli.command()
@click.argument("dataset")
@click.option("--split", help="Split to audit (default: train, or the only split there is).")
@click.option(
    "--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Models trained, each scoring one fold."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tsv", "jsonl"]),
    default="tsv",
    show_default=True,
    help="tsv: row, given label, suggested label, score, text; jsonl: one object per row.",
)
@settings_options(
    "A train setting for the fold models (named like its flag: --set epochs=10).", "Seed of the folds and runs."
)
@handle_errors
def audit(
    dataset: str,
    split: str | None,
    folds: int,
    fmt: str,
    vectors: str | None,
    settings: tuple[str, ...],
    seed: int,
    **opts: Any,
) -> None:
    """List the rows of DATASET whose label is likely wrong, the most suspect first.

    Each of --folds models trains on the other folds at train's settings and scores its own fold, so every
    row gets probabilities from a model that never saw it; confident learning (cleanlab) then flags the rows
    whose given label the models confidently put elsewhere. One line per flagged row on stdout; progress and
    a summary on stderr.

    \b
    Examples:
      grutext audit data/reviews.csv > suspects.tsv
      grutext audit data/tickets --folds 10 --format jsonl --set epochs=5 | head
    """
    from grutext.auditing import audit as run_audit

    fixed = _fixed_settings(opts, vectors, settings)
    fixed["seed"] = seed
    console = stderr_console()

    def on_fold(done: Any) -> None:
        console.print(f"fold {done.fold}/{done.folds}: {done.rows:,} rows scored ({done.seconds:.0f}s)", markup=False)

    def on_event(event: Any) -> None:
        from grutext.events import EpochDone

        if isinstance(event, EpochDone):
            console.print(
                f"  epoch {event.epoch}: validation {event.metric.replace('_f1', '-F1')} {event.val_score:.4f} "
                f"({event.seconds:.0f}s)",
                markup=False,
            )

    result = run_audit(dataset, fixed, folds=folds, split=split, on_fold=on_fold, on_event=on_event)
    out = sys.stdout
    try:
        for s in result.suspects:
            if fmt == "jsonl":
                out.write(json.dumps(s.record(result.multi_label), ensure_ascii=False) + "\n")
            else:
                text = " ".join(s.text.split())  # one line, whatever the text holds
                out.write(f"{s.row}\t{','.join(s.label)}\t{','.join(s.suggested)}\t{s.score:.4f}\t{text}\n")
        out.flush()
    except BrokenPipeError:
        quiet_exit(0)
    share = len(result.suspects) / max(result.rows, 1)
    console.print(
        f"{dataset} [{result.split}]: {result.rows:,} rows, {len(result.suspects):,} flagged ({share:.1%}) by "
        f"{result.folds}-fold confident learning",
        markup=False,
        soft_wrap=True,
    )
    for pair, count in list(result.pairs.items())[:10]:
        console.print(f"  {pair}: {count:,}", markup=False, soft_wrap=True)


def _parse_setting(text: str) -> Any:
    """A --set value: an integer, a number, true/false/none, or the text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)
