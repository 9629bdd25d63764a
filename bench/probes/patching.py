"""What the probes that patch grutext's internals share: a patch of a name that no longer exists stops the probe
with a message, instead of running the unpatched library and reporting its figures as the probe's.

The probes in this folder measured one question each, at the commit docs/experiments.md names beside their
figures; the library has moved since (one training loop, grutext.loop). To rerun one that stops here, check out
that commit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]  # bench/: the harness (sweep.py, results.py) the probes build on
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def require(owner: Any, *names: str) -> None:
    """Stop, saying why, unless every name this probe patches still exists on `owner`."""
    missing = [name for name in names if not hasattr(owner, name)]
    if missing:
        where = getattr(owner, "__name__", type(owner).__name__)
        raise SystemExit(
            f"{Path(sys.argv[0]).name}: {where} has no {', '.join(missing)} any more, so this probe's patch would "
            "change nothing; it measured an earlier version of the library: check out the commit "
            "docs/experiments.md names beside its figures to rerun it"
        )
