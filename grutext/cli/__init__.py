"""The command line: parse options, call one library function, render the result. One module per command
family; `common` holds the group, error handling and shared options. Only this package imports click or rich.
"""

from __future__ import annotations

from grutext.cli import inspect, pretrain, run, score, train  # noqa: F401 - each module registers its commands
from grutext.cli.common import cli, handle_errors, main

__all__ = ["cli", "handle_errors", "main"]
