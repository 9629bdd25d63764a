"""What the resumable benchmark scripts share: rows kept as JSON lines (a run that stops goes on where it
stopped), and rows grouped for a table."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def saved_rows(path: Path) -> list[Row]:
    """The rows an earlier run wrote to `path` (none when it does not exist)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def save_row(path: Path, row: Row, rows: list[Row]) -> None:
    """Append `row` to the file (at once, so an interrupted run keeps it) and to `rows`; echo it on stderr."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    rows.append(row)
    print(json.dumps(row), file=sys.stderr)


def grouped(rows: list[Row], key: Callable[[Row], Hashable]) -> dict[Hashable, list[Row]]:
    """Rows by `key`, in the order each key first appears: one table line each."""
    out: dict[Hashable, list[Row]] = {}
    for row in rows:
        out.setdefault(key(row), []).append(row)
    return out
