"""What the resumable benchmark scripts share: rows kept as JSON lines (a run that stops goes on where it
stopped), and rows grouped for a table."""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def saved_rows(path: Path) -> list[Row]:
    """The rows an earlier run wrote to `path` (none when it does not exist)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


@functools.cache
def build() -> str:
    """The commit of the grutext package that runs (short hash, "+changed" when its files differ from it), so
    rows of different builds in one file stay told apart; "unknown" outside a git checkout."""
    import grutext

    package = Path(grutext.__file__).resolve().parent
    git = ["git", "-C", str(package)]
    head = subprocess.run([*git, "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown"
    changed = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True).stdout
    return head.stdout.strip() + ("+changed" if changed.strip() else "")


def save_row(path: Path, row: Row, rows: list[Row]) -> None:
    """Append `row` to the file (at once, so an interrupted run keeps it) and to `rows`; echo it on stderr. The
    row is stamped with the build that made it."""
    row.setdefault("build", build())
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


def set_of(row: Row) -> str:
    """The data set of a probe row, from its run folder's name (sst2-500-0-dev2000 -> sst2)."""
    return str(row["run"]).split("-")[0]


def set_means(corner: str, lines: list[tuple[str, list[tuple[str, float]]]]) -> str:
    """A markdown table of means per set: one line per (name, [(set, value), ...]), the sets as columns and their
    mean last; a set a line has no value for is left blank, and so is that line's mean."""
    sets = sorted({s for _, pairs in lines for s, _ in pairs})
    out = (
        (f"| {corner} | " if corner else "| | ")
        + " | ".join(sets)
        + " | mean |\n|---|"
        + "---:|" * (len(sets) + 1)
        + "\n"
    )
    for name, pairs in lines:
        values = [[v for s, v in pairs if s == column] for column in sets]
        cells = [f"{statistics.mean(v):.4f}" if v else "" for v in values]
        mean = f"{statistics.mean(statistics.mean(v) for v in values):.4f}" if all(values) else ""
        out += f"| {name} | " + " | ".join(cells) + f" | {mean} |\n"
    return out


def probe_main(
    doc: str | None,
    items: str,
    score: Callable[[Path, argparse.Namespace], Row],
    table: Callable[[Path], str],
    options: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
) -> None:
    """The command line of the probes over kept self-training rounds (bench/probes/keep_rounds): score each
    folder given and print its row as a JSON line, or print the table of saved rows (--table)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*", type=Path, help=items)
    parser.add_argument("--work", type=Path, help="few_labels.py's --work, where each run's draw folder is")
    parser.add_argument("--table", type=Path, help="print the mean of each column per set from saved lines")
    options(parser)
    args = parser.parse_args()
    if args.table:
        print(table(args.table), end="")
    for item in args.items:
        print(json.dumps(score(item, args)), flush=True)
