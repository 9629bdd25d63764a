"""What every command shares: the click group, the error and signal handling, shared options, the entry point.

stdout carries results (labels, JSONL, --json objects); stderr carries people's output (progress, tables).
torch and datasets are imported inside the commands, so `grutext --help` starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from grutext import __version__
from grutext.config import ENGINES
from grutext.errors import GrutextError, UsageError, interrupt_code, signal_received, stopped_line

F = TypeVar("F", bound=Callable[..., Any])


def stderr_console() -> Any:
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
            quiet_exit(0)
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


def stopped_quietly(command: str, code: int) -> NoReturn:
    """As _stopped, for a command whose stdout may be a closed pipe: the line, then no flush into it."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(f"{command}: interrupted by {signal.Signals(code - 128).name}", err=True)
    quiet_exit(code)


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


class _Group(click.Group):
    """click turns a KeyboardInterrupt that reaches it into `Aborted!` and exit 1. A signal that lands while
    click parses the command line or dispatches to the command (a window that grows to 100 ms on a loaded
    machine) ends the command the documented way instead: one line, 130 or 143."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as exc:
            _stopped_early(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            _stopped_early(exc)


def _stopped_early(exc: KeyboardInterrupt) -> NoReturn:
    code = interrupt_code(exc)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(stopped_line(code))
    sys.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


def headline(metrics: dict[str, Any]) -> str:
    """The main scores of a metrics dict, single- or multi-label."""
    keys = ("accuracy", "macro_f1", "weighted_f1") if "accuracy" in metrics else ("micro_f1", "macro_f1", "samples_f1")
    return ", ".join(f"{k.replace('_f1', '-F1')} {metrics[k]:.4f}" for k in keys)


def use_threads(model: Any) -> None:
    from grutext.engine import use_threads

    use_threads(model)


def quiet_exit(code: int) -> NoReturn:
    """Leave without flushing into a closed pipe (which would print a BrokenPipeError)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
    sys.exit(code)


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
