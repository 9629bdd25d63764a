"""Expected failures. The CLI turns these into one `Error:` line and exit code 1; anything else is a bug."""

from __future__ import annotations

import _thread
import os
import signal
import sys
from typing import Any


class GrutextError(Exception):
    """Base class: the message says what happened, where, and how to fix it."""


class DataError(GrutextError):
    """The input data cannot be read or does not make sense for classification."""


class InputError(DataError, TypeError):
    """What a Python caller passed is not texts (a number, None, one bare string); also a TypeError, as Python
    code expects of a wrong argument type."""


class ConfigError(GrutextError):
    """A setting is out of range or inconsistent with another."""


class UsageError(ConfigError):
    """Settings that contradict each other or the input (an --embed-dim the vectors do not have): exit 2."""


class CheckpointError(GrutextError):
    """A checkpoint directory is missing, incomplete, tampered with, or cannot be written."""


class TrainingError(GrutextError):
    """Training cannot go on (for example the loss became NaN)."""


class Interrupted(GrutextError):
    """Training was stopped by a signal; a resumable state was saved. Exit status is 128 + the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so every command stops the same way (exit 143)."""


_received: list[int] = []


def raise_interrupt(signum: int, frame: object) -> None:
    """The SIGINT and SIGTERM handler the command line installs first thing.

    It also records the signal: a KeyboardInterrupt raised inside a native module's initialisation comes out
    as an ImportError (onnxruntime's pybind11 init does this), and the CLI must still end as a stop by signal."""
    _received.append(signum)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def redeliver_swallowed(unraisable: Any) -> None:
    """sys.unraisablehook while the CLI's handler is installed: where the handler's KeyboardInterrupt was raised
    inside a callback Python cannot propagate from (a weakref callback of the import machinery, 1 run in 50 when
    the signal came during start-up), Python would print "Exception ignored" and carry on, and predict would then
    wait on an idle stdin for ever. The signal is sent again from another thread instead, to land where it stops
    the command; anything else goes to Python's own hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _received:
        signum = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
        _thread.start_new_thread(os.kill, (os.getpid(), signum))
        return
    sys.__unraisablehook__(unraisable)


def signal_received() -> int | None:
    """The first signal the command line's handler caught, if any."""
    return _received[0] if _received else None


def interrupt_code(exc: BaseException | None = None) -> int:
    """The exit status for a stop by signal: 128 + its number, 143 for SIGTERM and 130 for SIGINT."""
    if exc is None:
        return 128 + (signal_received() or signal.SIGINT)
    return 143 if isinstance(exc, Terminated) else 130


def stopped_line(code: int) -> str:
    """The one line a command stopped by a signal prints on stderr, whenever the signal came: `predict:
    interrupted by SIGINT` (the command named as typed; `grutext` before one is known)."""
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "grutext")
    return f"{command}: interrupted by {signal.Signals(code - 128).name}\n"
