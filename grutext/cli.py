"""The command line: parse options, call one library function, render the result.

stdout carries results (labels, JSONL, --json objects); stderr carries people's output (progress, tables).
torch and datasets are imported inside the commands, so `grutext --help` starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import io
import json
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from grutext import __version__
from grutext.config import (
    CELLS,
    DEFAULT_BIGRAM_BUCKETS,
    DEFAULT_CHAR_NGRAMS,
    DEVICES,
    EARLY_STOP_METRICS,
    ENGINES,
    INFER_BATCH_SIZE,
    INPUT_FORMATS,
    MAX_VOCAB,
    MULTI_LABEL_LR,
    POOLINGS,
    SINGLE_LABEL_LR,
    THRESHOLD_MODES,
    TOKENIZER_KINDS,
    TRUNCATIONS,
    ModelConfig,
    TokenizerConfig,
    TrainConfig,
    parse_char_ngrams,
)
from grutext.errors import ConfigError, GrutextError, UsageError, interrupt_code, signal_received, stopped_line

F = TypeVar("F", bound=Callable[..., Any])


def _stderr_console() -> Any:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            """rich exits 1 when its pipe closes (`grutext evaluate ... 2>&1 | head -1`); a reader that has
            seen enough is no error: handle_errors ends the command quietly with 0, as predict does."""
            self.quiet = True
            raise BrokenPipeError

    return _Console(stderr=True, highlight=False)


def handle_errors(func: F) -> F:
    """Expected failures become one `Error:` line and exit 1; a signal ends the command with one line and
    128 + its number (click would print `Aborted!` and exit 1); a bug keeps its traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning  # a library warning is one line on stderr
                return func(*args, **kwargs)
        except BrokenPipeError:  # the reader of stdout or stderr left: what it wanted was written
            _quiet_exit(0)
        except UsageError as exc:
            raise click.UsageError(str(exc)) from None
        except GrutextError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt as exc:
            _stopped(func.__name__, interrupt_code(exc))
        except Exception:
            if signal_received() is None:
                raise
            _stopped(func.__name__, interrupt_code())  # a signal that surfaced as another error (see raise_interrupt)

    return wrapper  # type: ignore[return-value]


def _stopped(command: str, code: int) -> NoReturn:
    click.echo(f"{command}: interrupted by {signal.Signals(code - 128).name}", err=True)
    sys.exit(code)


def _stopped_quietly(command: str, code: int) -> NoReturn:
    """As _stopped, for a command whose stdout may be a closed pipe: the line, then no flush into it."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(f"{command}: interrupted by {signal.Signals(code - 128).name}", err=True)
    _quiet_exit(code)


def data_options(func: F) -> F:
    """Options shared by every command that reads labelled data."""
    options = [
        click.option("--text-column", help="Column holding the texts (found automatically when unambiguous)."),
        click.option("--label-column", help="Column holding the labels (found automatically when unambiguous)."),
        click.option("--config-name", help="Hub datasets only: the dataset configuration (subset) to load."),
        click.option("--revision", help="Hub datasets only: a branch, tag or commit to load."),
        click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of local files."),
        click.option(
            "--label-sep",
            help="Split string labels on this separator, e.g. ',' for 'joy,love' (turns on multi-label).",
        ),
        click.option(
            "--on-bad-row",
            type=click.Choice(["fail", "skip"]),
            default="fail",
            show_default=True,
            help="What to do with rows whose text or label is empty or missing.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


engine_option = click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="auto",
    show_default=True,
    help="onnx: model.onnx on onnxruntime (predict then never imports torch); torch: the model as trained; auto: "
    "onnx when the checkpoint has model.onnx and the device is the CPU.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="grutext")
def cli() -> None:
    """grutext: train, evaluate and run GRU text classifiers from the terminal.

    \b
    Examples:
      grutext train data/bbc --output models/bbc
      grutext evaluate --model models/bbc data/bbc
      cat texts.txt | grutext predict --model models/bbc
      grutext info --model models/bbc
    """


# --------------------------------------------------------------------------------------------- train

_T = TrainConfig()
_M = ModelConfig()


def _char_ngrams(value: str | None) -> str | None:
    """--char-ngrams checked as it is parsed, so a malformed value is a usage error (exit 2)."""
    try:
        if value is not None:
            parse_char_ngrams(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc).removeprefix("model.char_ngrams ")) from None
    return value


_K = TokenizerConfig()


@cli.command()
@click.argument("dataset")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="Checkpoint directory to write.")
@data_options
@click.option(
    "--epochs", type=click.IntRange(min=1), default=_T.epochs, show_default=True, help="Most epochs to train."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=_T.batch_size,
    show_default=True,
    help="Texts per training batch.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True, max=10),
    default=None,
    show_default=f"{SINGLE_LABEL_LR:g}; {MULTI_LABEL_LR:g} for multi-label data",
    help="Peak learning rate of AdamW.",
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0, max=10),
    default=_T.weight_decay,
    show_default=True,
    help="AdamW weight decay.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0, max=0.9),
    default=_T.warmup,
    show_default=True,
    help="Fraction of the planned steps spent warming up the learning rate.",
)
@click.option(
    "--grad-clip",
    type=click.FloatRange(min=0, min_open=True),
    default=_T.grad_clip,
    show_default=True,
    help="Clip the gradient norm to this value.",
)
@click.option(
    "--patience",
    type=click.IntRange(min=0),
    default=_T.patience,
    show_default=True,
    help="Stop after this many epochs without a better validation score.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(min=0, max=0.5, min_open=True),
    default=_T.val_fraction,
    show_default=True,
    help="Share of train set aside for validation when there is no validation split.",
)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps (smoke runs).")
@click.option(
    "--seed",
    type=click.IntRange(min=0, max=2**32 - 1),
    default=_T.seed,
    show_default=True,
    help="Seed for weights, data order and the validation carve-out.",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=_T.device,
    show_default=True,
    help="Where to train: auto picks cuda, then mps, then cpu.",
)
@click.option(
    "--tokenizer",
    type=click.Choice(TOKENIZER_KINDS),
    default=_K.kind,
    show_default=True,
    help="Tokenizer model trained on the training texts.",
)
@click.option(
    "--vocab-size",
    type=click.IntRange(min=10),
    default=_K.vocab_size,
    show_default=True,
    help="Largest vocabulary the tokenizer may learn.",
)
@click.option(
    "--max-length",
    type=click.IntRange(min=1),
    default=_K.max_length,
    show_default=True,
    help="Tokens kept per text.",
)
@click.option(
    "--truncation",
    type=click.Choice(TRUNCATIONS),
    default=_K.truncation,
    show_default=True,
    help="Which tokens of a long text to keep: the head, or head and tail.",
)
@click.option("--lowercase/--no-lowercase", default=_K.lowercase, show_default=True, help="Lowercase texts.")
@click.option(
    "--embed-dim",
    type=click.IntRange(min=1, max=8192),
    default=None,
    show_default="128; with --vectors, the file's dimension",
    help="Token embedding size.",
)
@click.option(
    "--hidden-size",
    type=click.IntRange(min=1, max=8192),
    default=_M.hidden_size,
    show_default=True,
    help="GRU hidden size (per direction).",
)
@click.option(
    "--layers",
    type=click.IntRange(min=1, max=16),
    default=_M.layers,
    show_default=True,
    help="Stacked GRU layers.",
)
@click.option(
    "--bidirectional/--no-bidirectional",
    default=_M.bidirectional,
    show_default=True,
    help="Run a second GRU right to left.",
)
@click.option(
    "--dropout",
    type=click.FloatRange(min=0, max=0.95),
    default=_M.dropout,
    show_default=True,
    help="Dropout on embeddings, between layers and before the classifier.",
)
@click.option(
    "--pooling",
    type=click.Choice(POOLINGS),
    default=_M.pooling,
    show_default=True,
    help="How GRU states become one vector: last state, mean or max over time, or max and mean side by side.",
)
@click.option(
    "--embedding-skip/--no-embedding-skip",
    default=_M.embedding_skip,
    show_default=True,
    help="Also pool the word embeddings beside the GRU states (a bag-of-words path, as in RCNN).",
)
@click.option(
    "--bigrams",
    "bigram_buckets",
    type=click.IntRange(min=0, max=MAX_VOCAB),
    default=_M.bigram_buckets,
    show_default=f"{DEFAULT_BIGRAM_BUCKETS} for single-label data, 0 for multi-label",
    help="A fastText-style head over the words and their hashed word bigrams, with this many buckets (0: none). "
    "It is trained by its own loss; its logits are averaged with the GRU's.",
)
@click.option(
    "--char-ngrams",
    "char_ngrams",
    metavar="MIN-MAX",
    default=_M.char_ngrams,
    callback=lambda ctx, param, value: _char_ngrams(value),
    show_default=DEFAULT_CHAR_NGRAMS
    if DEFAULT_CHAR_NGRAMS == "0"
    else f"{DEFAULT_CHAR_NGRAMS} with the bigram head and the word tokenizer, else 0",
    help="The bigram head also reads the character n-grams of each word, MIN to MAX characters long, hashed into "
    "its buckets (as fastText's -minn/-maxn), so words never seen in training still count. 0: none.",
)
@click.option(
    "--cell",
    type=click.Choice(CELLS),
    default=_M.cell,
    show_default=True,
    help="Recurrent cell: gru (PyTorch's GRU, cuDNN on a GPU: reset gate after the recurrent matmul), cho2014 "
    "(the GRU as Cho et al. 2014 write it: reset gate before it), lstm (for comparison).",
)
@click.option(
    "--class-weight",
    default=_T.class_weight,
    show_default=True,
    help="Loss weights for imbalanced data: none, balanced (inverse frequency; positive weights for "
    "multi-label), or a JSON file mapping label -> weight.",
)
@click.option(
    "--early-stop-metric",
    type=click.Choice(EARLY_STOP_METRICS),
    default=_T.early_stop_metric,
    show_default=True,
    help="Validation metric that picks the epoch: auto is macro_f1 for imbalanced or multi-label data, else accuracy.",
)
@click.option(
    "--thresholds",
    type=click.Choice(THRESHOLD_MODES),
    default=_T.thresholds,
    show_default=True,
    help="Multi-label: tune one decision threshold on validation data, or one per label.",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "fast", "reference"]),
    default="auto",
    show_default=True,
    help="auto: the fast CPU path where it runs (the reference on a GPU and under torchrun); reference: the "
    "readable PyTorch implementation everywhere (same model, slower on the CPU).",
)
@click.option(
    "--vectors",
    type=click.Path(path_type=str),
    default=None,
    help="Pretrained word vectors to start the embedding table from: GloVe or word2vec/fastText .vec text, "
    "or word2vec binary, optionally gzipped. Stored in the checkpoint; predict never needs the file.",
)
@click.option(
    "--vectors-std",
    type=click.FloatRange(min=0.0, max=100.0),
    default=_T.vectors_std,
    show_default=True,
    help="With --vectors: rescale the table to this standard deviation (0 keeps the file's scale).",
)
@click.option(
    "--word-dropout",
    type=click.FloatRange(min=0.0, max=0.9),
    default=None,
    help="Share of training tokens hidden behind [UNK] at each step [default: 0.1; multi-label 0].",
)
@click.option(
    "--label-smoothing",
    type=click.FloatRange(min=0.0, max=0.5),
    default=_T.label_smoothing,
    show_default=True,
    help="Single-label: smooth the training targets by this much.",
)
@click.option(
    "--streaming",
    is_flag=True,
    help="Read the data as a stream, never all of it in memory (local jsonl/csv/tsv/parquet/.txt, gzipped too, "
    "or a hub id).",
)
@click.option("--labels", help="Streaming: the label set, comma-separated (else one pass over the label column).")
@click.option(
    "--tokenizer-sample",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Streaming: the tokenizer learns from the first N training texts.",
)
@click.option(
    "--shuffle-buffer",
    type=click.IntRange(min=1),
    default=16_384,
    show_default=True,
    help="Streaming: texts shuffled together before batching.",
)
@click.option(
    "--steps-per-epoch", type=click.IntRange(min=1), default=None, help="Streaming: an epoch is N steps, not a pass."
)
@click.option(
    "--max-validation",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="Streaming: validation texts held in memory.",
)
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
      grutext train ../shared/data/chnsenticorp -o models/chn --epochs 5
      grutext train imdb --output models/imdb --max-length 400
      grutext train data/bbc -o models/bbc --resume     # after Ctrl-C: continue where it stopped
    """
    from grutext.events import ModelBuilt
    from grutext.settings import configs_from_options
    from grutext.training import train as run_train

    source = click.get_current_context().get_parameter_source("vectors_std")
    if opts["vectors"] is None and source is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--vectors-std rescales pretrained vectors; pass --vectors FILE with it")
    spec, tok_cfg, model_cfg, cfg = configs_from_options(dataset, opts)
    if opts["streaming"]:
        _keep_heap_flat()
    from grutext.errors import Interrupted

    reporter = TrainReporter(_stderr_console())

    def on_event(event: Any) -> None:
        if isinstance(event, ModelBuilt):
            # The data, the token ids and the model live from here to the end of the run: frozen, they are
            # skipped by the collector's full passes (one epoch of sst2 ran six, 0.46 s in all).
            gc.freeze()
        reporter(event)

    try:
        with reporter:
            result = run_train(
                spec, tok_cfg, model_cfg, cfg, output, overwrite=overwrite, resume=resume, on_event=on_event
            )
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


def headline(metrics: dict[str, Any]) -> str:
    """The main scores of a metrics dict, single- or multi-label."""
    keys = ("accuracy", "macro_f1", "weighted_f1") if "accuracy" in metrics else ("micro_f1", "macro_f1", "samples_f1")
    return ", ".join(f"{k.replace('_f1', '-F1')} {metrics[k]:.4f}" for k in keys)


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
            self.log(f"model: {event.parameters:,} parameters on {event.device} ({event.backend} backend)")
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
            macro = f"val macro-F1 {event.val_macro_f1:.4f}, " if event.metric != "macro_f1" else ""
            self.log(
                f"epoch {event.epoch}: train loss {event.train_loss:.4f}, val loss {event.val_loss:.4f}, "
                f"val {event.metric.replace('_f1', '-F1')} {event.val_score:.4f}, {macro}"
                f"{event.seconds:.1f}s, {event.examples_per_s:,.0f} ex/s, {event.tokens_per_s:,.0f} tok/s{mark}"
            )
        elif isinstance(event, t.Finished):
            m = event.metrics
            scores = f"validation {headline(m['validation'])}"
            if "test" in m:
                scores += f"; test {headline(m['test'])}"
            self.log(f"{event.stopped}; kept epoch {event.best_epoch}")
            self.log(f"saved {event.path}: {scores}")


# ---------------------------------------------------------------------------------------------- tune


@cli.command()
@click.argument("dataset")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="Checkpoint directory to write.")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Most trials (default: until --timeout).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Minutes to search; the trial running then finishes.",
)
@data_options
@click.option("--vectors", type=click.Path(path_type=str), default=None, help="Pretrained vectors, as for train.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Fix a train setting instead of searching it (named like its flag: --set epochs=10 --set tokenizer=bpe).",
)
@click.option("--seed", type=click.IntRange(min=0), default=13, show_default=True, help="Seed of the search and runs.")
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
    console = _stderr_console()

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

    def on_epoch(number: int, done: Any) -> None:
        console.print(
            f"trial {number}, epoch {done.epoch}: validation {done.metric.replace('_f1', '-F1')} "
            f"{done.val_score:.4f} ({done.seconds:.0f}s)",
            markup=False,
            soft_wrap=True,
        )

    from grutext.errors import Interrupted

    try:
        result = run_tune(
            dataset, output, trials=trials, timeout=timeout * 60, seed=seed, fixed=fixed, overwrite=overwrite,
            on_trial=on_trial, on_epoch=on_epoch,
        )  # fmt: skip
    except Interrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(128 + exc.signum)
    console.print(f"kept trial with validation {result.best_score:.4f} in {result.path}", markup=False)
    if as_json:
        click.echo(json.dumps({"path": str(result.path), "score": result.best_score, "params": result.best_params}))


def _parse_setting(text: str) -> Any:
    """A --set value: an integer, a number, true/false/none, or the text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


# ------------------------------------------------------------------------------------------ evaluate


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
@engine_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object on stdout.")
@handle_errors
def evaluate(
    model_dir: Path,
    dataset: str,
    split: str | None,
    batch_size: int,
    threshold: float | None,
    engine: str,
    as_json: bool,
    **opts: Any,
) -> None:
    """Score a checkpoint on labelled DATASET (same forms as train).

    Shows accuracy, macro-F1, weighted-F1, per-class precision/recall/F1 and a confusion matrix on stderr.

    \b
    Examples:
      grutext evaluate --model models/bbc data/bbc
      grutext evaluate -m models/sst2 ../shared/data/sst2 --split validation --json
    """
    from grutext.data import load_labelled, pick_split, split_of
    from grutext.engine import load_engine
    from grutext.evaluate import evaluate as run_evaluate

    model = load_engine(model_dir, engine, "cpu", batch_size, threshold)
    _use_threads(model)
    data = load_labelled(dataset, **opts)
    name, chosen = pick_split(data, split)
    title = f"{dataset} [{name}]"
    if Path(dataset).is_file():  # a single file is scored whole, whatever split its name implies
        name = split_of(Path(dataset)) or "all"
        title = dataset
    metrics = run_evaluate(model, chosen)
    if as_json:
        click.echo(json.dumps({"split": name, **metrics}, ensure_ascii=False))
    else:
        render_metrics(_stderr_console(), metrics, title)


def render_metrics(console: Any, metrics: dict[str, Any], title: str) -> None:
    """Summary line, per-class table and confusion matrix; label names are shown verbatim (no rich markup)."""
    from rich.markup import escape
    from rich.table import Table

    extra = ""
    if "subset_accuracy" in metrics:
        extra = f", subset accuracy {metrics['subset_accuracy']:.4f}, Hamming loss {metrics['hamming_loss']:.4f}"
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


# ------------------------------------------------------------------------------------------- predict


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
    text_column: str | None,
    input_format: str,
    binary_ok: bool,
    batch_size: int,
    device: str,
    engine: str,
) -> None:
    """Label texts from FILES (one text per line; - is stdin), or from stdin when no FILES are given.

    Writes exactly one line per input line, in input order, as the input streams.

    \b
    Examples:
      cat texts.txt | grutext predict --model models/bbc
      grutext predict -m models/bbc news.txt --format jsonl --top-k 2
      grutext predict -m models/bbc reviews.csv --text-column body --format tsv
    """
    from grutext.data import iter_texts
    from grutext.engine import load_engine
    from grutext.prediction import format_prediction

    predictor = load_engine(model_dir, engine, device, batch_size, threshold)
    _use_threads(predictor)
    if top_k is not None:
        top_k = min(top_k, len(predictor.labels))
    trained_column = predictor.config.get("data", {}).get("text_column")
    texts = iter_texts(files, input_format, text_column, trained_column, binary_ok)
    out = sys.stdout
    try:
        for chunk in predictor.stream(texts):
            out.write("".join(format_prediction(p, fmt, top_k) + "\n" for p in chunk))
            out.flush()
    except BrokenPipeError:
        _quiet_exit(0)
    except KeyboardInterrupt as exc:
        _stopped_quietly("predict", interrupt_code(exc))


def _use_threads(model: Any) -> None:
    from grutext.engine import use_threads

    use_threads(model)


def _quiet_exit(code: int) -> NoReturn:
    """Leave without flushing into a closed pipe (which would print a BrokenPipeError)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
    sys.exit(code)


# -------------------------------------------------------------------------------------------- export


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint directory."
)
@click.option(
    "--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True, help="Model format to write."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write a copy here (the checkpoint always gets its model.onnx).",
)
@handle_errors
def export(model_dir: Path, fmt: str, output: Path | None) -> None:
    """Write the checkpoint's model as ONNX (model.onnx in the checkpoint), so predict runs without torch.

    The graph takes token ids and lengths and gives probabilities; the tokenizer stays tokenizer.json.

    \b
    Examples:
      grutext export --model models/bbc
      grutext export -m models/bbc --output deploy/bbc.onnx
    """
    from grutext.artifacts import read_meta
    from grutext.onnx_export import export as run_export

    meta = read_meta(model_dir)
    click.echo(f"wrote {meta.path / 'model.onnx'}", err=True)
    path = run_export(meta, output)
    if output is not None:
        click.echo(f"wrote {path}", err=True)


# --------------------------------------------------------------------------------------------- serve


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
    from grutext.data import iter_texts
    from grutext.engine import load_engine
    from grutext.explain import as_json, page, plain
    from grutext.explain import explain as run_explain

    model = load_engine(model_dir, engine)
    _use_threads(model)
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
        _quiet_exit(0)
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


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint directory."
)
@click.argument("dataset", required=False)
@click.option(
    "--output", "-o", required=True, type=click.Path(path_type=Path), help="Folder for index.html and charts."
)
@click.option("--split", help="Split of DATASET to score (default: test, or the only split there is).")
@data_options
@engine_option
@handle_errors
def report(model_dir: Path, dataset: str | None, output: Path, split: str | None, engine: str, **opts: Any) -> None:
    """Write an HTML report with charts: learning curves, confusion matrix, per-class scores, calibration.

    Without DATASET it shows what the checkpoint holds (curves, the test scores stored at training); with
    labelled DATASET the model is run over it, adding the reliability diagram and the most confident mistakes.
    OUT/index.html opens from disk in any browser.

    \b
    Examples:
      grutext report --model models/bbc data/bbc --output reports/bbc
      grutext report -m models/bbc -o reports/bbc-stored
    """
    from grutext.engine import load_engine
    from grutext.report import evaluate_split, write_report

    model = load_engine(model_dir, engine)
    _use_threads(model)
    evaluation = None
    if dataset is not None:
        from grutext.data import load_labelled, pick_split

        name, chosen = pick_split(load_labelled(dataset, **opts), split)
        evaluation = evaluate_split(model, chosen, f"{dataset} [{name}]")
    page = write_report(model, model.info(), model.metrics, output, evaluation)
    click.echo(f"wrote {page}", err=True)


# ---------------------------------------------------------------------------------------------- info


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint directory."
)
@click.option("--json", "as_json", is_flag=True, help="Print the description as one JSON object on stdout.")
@handle_errors
def info(model_dir: Path, as_json: bool) -> None:
    """Describe a checkpoint: labels, size, tokenizer, architecture, training data and scores.

    \b
    Examples:
      grutext info --model models/bbc
      grutext info -m models/bbc --json | jq .test
    """
    from grutext.checkpoint import describe, load

    ckpt = load(model_dir)  # the weights too: info is also how a user checks a copied checkpoint is whole
    described = describe(ckpt)
    if as_json:
        click.echo(json.dumps(described, ensure_ascii=False))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(str(ckpt.path)), show_header=False)
    m = described["model"]
    cell = {"gru": "GRU", "cho2014": "GRU (Cho et al. 2014)", "lstm": "LSTM"}.get(m["cell"], m["cell"])
    arch = (
        f"embedding {m['embed_dim']} -> {'bi' if m['bidirectional'] else 'uni'}directional {cell} "
        f"{m['layers']}x{m['hidden_size']} -> {m['pooling']} pooling"
        f"{' (+ pooled embeddings)' if m.get('embedding_skip') else ''} -> linear {len(ckpt.labels)}"
        + (f", averaged with a bigram head ({m['bigram_buckets']:,} buckets" if m.get("bigram_buckets") else "")
        + (
            f", character {m['char_ngrams']}-grams"
            if m.get("bigram_buckets") and m.get("char_ngrams", "0") != "0"
            else ""
        )
        + (")" if m.get("bigram_buckets") else "")
    )
    t = described["tokenizer"]
    rows = [
        ("labels", ", ".join(ckpt.labels)),
        ("parameters", f"{described['parameters']:,}"),
        ("architecture", arch),
        ("dropout", str(m["dropout"])),
        (
            "tokenizer",
            f"{t['kind']}, {described['shape']['vocab_size']} tokens, max {t['max_length']} ({t['truncation']}), "
            f"{'lowercased' if t['lowercase'] else 'cased'}",
        ),
        ("training data", f"{described['data'].get('source', '?')} {described['data'].get('sizes', '')}"),
    ]
    if ckpt.shape.multi_label:
        d = described["decision"] or {}
        when = f"threshold {d['threshold']}" if d.get("threshold") is not None else "per-label thresholds"
        rows.append(
            ("multi-label", f"sigmoid outputs, {when}" + (", at least one label" if d.get("at_least_one") else ""))
        )
    for split, scores in described["scores"].items():
        rows.append(
            (
                f"{split} scores",
                ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()),
            )
        )
    if described["train_seconds"] is not None:
        rows.append(
            (
                "trained",
                f"{described['train_seconds']}s, best epoch {described['best_epoch']}, "
                f"grutext {described['grutext_version']}",
            )
        )
    for key, value in rows:
        table.add_row(key, escape(value))
    _stderr_console().print(table)


def main() -> None:
    """The console entry point: run one command, flush its output, and end the process with os._exit.

    Why os._exit: interpreter finalization races whatever threads are still alive, and some cannot be stopped.
    predict's reader thread may be blocked for good in a read of an idle pipe (`tail -f`), and native pools
    (torch's inter-op threads that run the scans, the tokenizers' and pyarrow's threads) may be mid-task;
    finalizing around them aborted the process (SIGABRT, exit 134) after every line had been printed.
    Everything a command writes is flushed or fsynced before this point, so there is nothing left to
    finalize; it also skips torch's teardown (0.5 s). (grutext.__main__ has installed the SIGTERM handler.)"""
    warnings.showwarning = _show_warning
    code = 0
    try:
        cli.main(prog_name="grutext")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt as exc:  # while click parses, before any command runs
        code = interrupt_code(exc)
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(stopped_line(code))
    if signal_received() is not None and code not in (0, 130, 143):  # a signal that surfaced as another error
        code = interrupt_code()
    _leave(code)


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """A library warning (the fast path falling back, say) as one line on stderr."""
    print(f"Warning: {message}", file=sys.stderr)


def _leave(code: int) -> NoReturn:
    # From here a signal takes its default action (the shell then reports 128 + its number) instead of
    # raising inside a flush.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: what could be written was written
            stream.flush()
    os._exit(code)
