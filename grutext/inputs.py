"""predict's inputs: texts from files or stdin, one per record, in order, with flat memory and no `datasets`
import (plain text, fastText .txt, csv, tsv, jsonl, parquet; gzipped too)."""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TextIO

from grutext.errors import DataError
from grutext.readers import FASTTEXT_PREFIX, file_format, iter_csv, iter_json_lines, text_column_by_name


def predict_text_column(columns: Sequence[str], given: str | None, trained: str | None, origin: str) -> str:
    """Which column predict reads: --text-column, else the column the model was trained on, else the rule by
    name, else the only column there is."""
    if given is not None:
        if given not in columns:
            raise DataError(
                f"column {given!r} not in {origin} (columns: {', '.join(columns)}); "
                "pass --text-column with one of those"
            )
        return given
    if trained is not None and trained in columns:
        return trained
    chosen = text_column_by_name(columns) or (columns[0] if len(columns) == 1 else None)
    if chosen is None:
        raise DataError(
            f"cannot tell which column of {origin} holds the texts (columns: {', '.join(columns)}); pass --text-column"
        )
    return chosen


class _NoNul(io.RawIOBase):
    """A binary stream that refuses NUL bytes, which no text holds: without it predict would label chunks of a
    binary file (an executable, a .safetensors file) and exit 0. Reads return what the source has, so lines
    still stream from a pipe as they arrive."""

    def __init__(self, source: IO[bytes], origin: str) -> None:
        self._read = getattr(source, "read1", source.read)
        self.origin = origin
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        if b"\x00" in data:
            at = self.offset + data.index(b"\x00")
            raise DataError(
                f"{self.origin} holds a NUL byte (at byte {at}): it looks like a binary file, not text; check the "
                "path, or pass --binary-ok to label it anyway"
            )
        n = len(data)
        buffer[:n] = data
        self.offset += n
        return n


def _open_input(path: str) -> IO[bytes]:
    """A file (gzip detected from its first bytes), or stdin for '-'. Stdin is read through a file object of
    its own over a duplicate descriptor, never sys.stdin.buffer: a reader thread blocked in a read of an idle
    pipe must not hold the lock that the interpreter takes on sys.stdin at exit."""
    if path == "-":
        try:
            return open(os.dup(sys.stdin.fileno()), "rb", buffering=0)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return sys.stdin.buffer  # a stdin without a descriptor (an in-process test runner)
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{path} is a directory; predict takes files of texts (or - for stdin)")
    if not p.exists():
        raise DataError(f"no such file: {path}")
    try:
        raw: IO[bytes] = open(p, "rb")  # noqa: SIM115 - handed to the caller, which closes it
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if raw.peek(2)[:2] == b"\x1f\x8b":  # type: ignore[attr-defined]
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def input_format(path: str, given: str) -> str:
    """How to read one predict input: as asked, else by its name (stdin and unknown names are plain text; a
    .txt file may turn out to be fastText's, see `_sniff_fasttext`)."""
    if given != "auto":
        return given
    fmt = None if path == "-" else file_format(Path(path))
    known = {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "json": "jsonl", "parquet": "parquet"}
    return known.get(fmt or "", "maybe-fasttext" if fmt == "fasttext" else "text")


def _sniff_fasttext(source: IO[bytes]) -> str:
    """A .txt file is fastText's labelled form when its first non-blank line starts with __label__ (train and
    evaluate read it so), else plain text: predict must not label '__label__pos great film' as a text."""
    head = source.peek(len(FASTTEXT_PREFIX) + 4096)  # type: ignore[attr-defined]
    return "fasttext" if head.lstrip().startswith(FASTTEXT_PREFIX.encode()) else "text"


def iter_texts(
    paths: Sequence[str],
    fmt: str = "auto",
    text_column: str | None = None,
    trained_column: str | None = None,
    binary_ok: bool = False,
) -> Iterator[str]:
    """Texts from files (or stdin for '-', or no paths), one per record, in order, with flat memory."""
    for path in paths or ("-",):
        origin = "stdin" if path == "-" else path
        kind = input_format(path, fmt)
        if kind == "parquet":
            yield from _parquet_texts(path, text_column, trained_column)
            continue
        stream = _open_input(path)
        try:
            raw: Any = stream if binary_ok else _NoNul(stream, origin)
            source: IO[bytes] = io.BufferedReader(raw)
            if kind == "maybe-fasttext":
                kind = _sniff_fasttext(source)
            yield from iter_records(source, kind, text_column, origin, trained_column)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()


def iter_lines(stream: Any) -> Iterator[str]:
    """Lines of a binary stream, split on \\n only (as `wc -l` counts), invalid UTF-8 replaced."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="\n")
    for line in text:
        yield line.removesuffix("\n").removesuffix("\r")


def iter_records(
    stream: Any, fmt: str, text_column: str | None, origin: str, trained_column: str | None = None
) -> Iterator[str]:
    """Texts from a plain, csv, tsv or jsonl binary stream, one per record (a blank record gives "")."""
    if fmt == "text":
        yield from iter_lines(stream)
        return
    if fmt == "fasttext":  # one record a line, its __label__ prefixes dropped, words as train reads them
        for line in iter_lines(stream):
            words = line.split()
            while words and words[0].startswith(FASTTEXT_PREFIX):
                words.pop(0)
            yield " ".join(words)
        return
    text: TextIO = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
    if fmt in ("csv", "tsv"):
        rows = iter_csv(text, "\t" if fmt == "tsv" else ",", origin)
        first = next(rows, None)
        if first is None:
            return
        index = first[1].index(predict_text_column(first[1], text_column, trained_column, origin))
        for _, row in rows:
            yield row[index] if index < len(row) else ""
        return
    column: str | None = None
    for number, record in iter_json_lines(text, origin):
        if record is None:
            yield ""
        elif isinstance(record, str):
            yield record
        elif isinstance(record, dict):
            if column is None:
                column = predict_text_column(list(record), text_column, trained_column, f"{origin}, line {number}")
            if column not in record:
                raise DataError(
                    f"{origin}, line {number}: no {column!r} key (keys: {', '.join(record)}); pass --text-column"
                )
            value = record[column]
            yield "" if value is None else str(value)
        else:
            raise DataError(f"{origin}, line {number}: expected a JSON object or string")


def _parquet_texts(path: str, text_column: str | None, trained_column: str | None) -> Iterator[str]:
    """One parquet column, a record batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path == "-":
        raise DataError("parquet cannot be read from stdin; pass the file's path")
    if not Path(path).is_file():
        raise DataError(f"no such file: {path}")
    try:
        reader = pq.ParquetFile(path)
        column = predict_text_column(reader.schema_arrow.names, text_column, trained_column, path)
        for batch in reader.iter_batches(columns=[column], batch_size=4096):
            yield from ("" if v is None else str(v) for v in batch.column(0).to_pylist())
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path} is not a readable parquet file ({exc})") from None
