"""Labelled records as streams (`grutext train --streaming`): data larger than memory, read as it is used.

Local jsonl, csv/tsv, parquet and fastText .txt files (gzipped too; a file, or a folder of split files) are
read with grutext.readers' own record parsers, one record at a time; a Hugging Face hub id is opened with
`datasets.load_dataset(..., streaming=True)`. Columns and labels follow the same rules as in memory. The
validation split, when the source has none, is a share of train chosen by a hash of each text (never by
position), so it is the same texts in every pass and on every rank; under torchrun, rank r of N reads records
r, r + N, r + 2N, ...
"""

from __future__ import annotations

import gzip
import io
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from grutext.data import LabelCheck, choose_columns
from grutext.errors import DataError
from grutext.readers import (
    FASTTEXT_PREFIX,
    LABEL_NAMES,
    SPLIT_ALIASES,
    Table,
    file_format,
    iter_csv,
    iter_json_lines,
    split_files,
    split_of,
)
from grutext.settings import DataSpec

PEEK_ROWS = 200  # rows read to choose the columns
HOLD_OUT_BUCKETS = 10_000


@dataclass
class Record:
    text: str
    labels: list[str]


class _Counted(io.RawIOBase):
    """A binary file that counts the bytes read from disk, for progress and ETA."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


@dataclass
class StreamSource:
    """Where a stream's records come from: local files per split, or a hub dataset."""

    name: str
    files: dict[str, list[Path]] | None  # local split -> files
    hub: Any | None  # datasets.IterableDatasetDict
    text_column: str | None = None
    label_column: str | None = None
    label_sep: str | None = None
    on_bad_row: str = "fail"
    encoding: str = "utf-8"
    class_names: list[str] | None = None  # ClassLabel names of the label column (parquet, hub)
    bytes_read: int = 0  # of the split being read, for progress
    untyped: bool = False  # the file being read holds text only (CSV, TSV, fastText): see data.typed_label
    _labels: LabelCheck | None = None

    @property
    def splits(self) -> list[str]:
        return list(self.files) if self.files is not None else list(self.hub or {})

    def size(self, split: str) -> int | None:
        """Bytes on disk of a local split (for an ETA), or None."""
        if self.files is None:
            return None
        return sum(p.stat().st_size for p in self.files[split])

    # ------------------------------------------------------------------ raw rows

    def _rows(self, split: str) -> Iterator[dict[str, Any]]:
        if self.hub is not None:
            yield from self.hub[split]
            return
        assert self.files is not None
        for path in self.files[split]:
            yield from self._file_rows(path)

    def _file_rows(self, path: Path) -> Iterator[dict[str, Any]]:
        fmt = file_format(path)
        origin = str(path)
        self.untyped = fmt in ("csv", "tsv", "fasttext")
        if fmt == "parquet":
            import pyarrow.parquet as pq

            reader = pq.ParquetFile(path)
            for batch in reader.iter_batches(batch_size=4096):
                self.bytes_read += batch.nbytes
                yield from batch.to_pylist()
            return
        counted = _Counted(open(path, "rb"))  # noqa: SIM115 - closed below
        base = self.bytes_read
        try:
            raw: IO[bytes] = io.BufferedReader(counted)
            if raw.peek(2)[:2] == b"\x1f\x8b":  # type: ignore[attr-defined]
                raw = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
            text = io.TextIOWrapper(raw, encoding=self.encoding, errors="strict", newline="")
            if fmt in ("csv", "tsv"):
                rows = iter_csv(text, "\t" if fmt == "tsv" else ",", origin)
                header = next(rows, (0, []))[1]
                for number, row in rows:
                    self.bytes_read = base + counted.count
                    if not row:
                        continue  # a blank line
                    if len(row) != len(header):
                        if self.on_bad_row == "skip":
                            yield {}  # counted as a bad row
                            continue
                        raise DataError(
                            f"{origin}, line {number}: {len(row)} fields where the header has {len(header)}; fix the "
                            "row (quote fields holding the delimiter), or pass --on-bad-row skip"
                        )
                    yield dict(zip(header, row, strict=True))
            elif fmt == "fasttext":
                for line in text:
                    self.bytes_read = base + counted.count
                    words = line.split()
                    names = []
                    while words and words[0].startswith(FASTTEXT_PREFIX):
                        names.append(words.pop(0)[len(FASTTEXT_PREFIX) :])
                    if words or names:
                        yield {"text": " ".join(words), "labels": names}
            elif fmt in ("jsonl", "json"):
                for number, value in iter_json_lines(text, origin):
                    self.bytes_read = base + counted.count
                    if value is None:
                        continue
                    if not isinstance(value, dict):
                        raise DataError(
                            f"{origin}, line {number}: expected a JSON object (--streaming reads JSON Lines, "
                            "not a JSON array)"
                        )
                    yield value
            else:
                raise DataError(f"{origin}: --streaming reads jsonl, csv, tsv, parquet and fastText .txt files")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{origin}: bytes that are not valid {self.encoding} ({exc.reason}); convert the file or pass "
                "--encoding"
            ) from None
        finally:
            self.bytes_read = base + counted.count
            counted.close()

    # ------------------------------------------------------------------ columns and records

    def choose_columns(self, split: str) -> tuple[str, str]:
        """The text and label columns, by the in-memory rules applied to the first rows."""
        rows = list(itertools.islice(self._rows(split), PEEK_ROWS))
        if not rows:
            raise DataError(f"{self.name} [{split}] holds no records")
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        table = Table({n: [row.get(n) for row in rows] for n in names}, f"{self.name} [{split}]")
        if self.label_column is None and "labels" in names and "label" not in names:
            self.label_column = "labels"  # the fastText reader's multi-label rows
        self.text_column, self.label_column = choose_columns(table, self.text_column, self.label_column)
        return self.text_column, self.label_column

    def records(self, split: str, rank: int = 0, world: int = 1) -> Iterator[tuple[int, Record | None]]:
        """(position, record) of a split's rows, this rank's share; a bad row gives None under
        --on-bad-row skip (an error otherwise)."""
        if self.text_column is None or self.label_column is None:
            self.choose_columns(split)
        self.bytes_read = 0
        for i, row in enumerate(self._rows(split)):
            if i % world != rank:
                continue
            yield i, self._record(row, f"{self.name} [{split}], record {i + 1}")

    def _record(self, row: dict[str, Any], where: str) -> Record | None:
        text, value = row.get(self.text_column or ""), row.get(self.label_column or "")
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        items = value if isinstance(value, (list, tuple)) else [] if value is None else [value]
        if self.label_sep is not None:
            items = [part for item in items for part in str(item).split(self.label_sep)]
        if self._labels is None:
            self._labels = LabelCheck(self.label_column or "", self.name, self.class_names, self.untyped)
        self._labels.untyped = self.untyped
        labels = sorted({n for n in (self._labels.name(item, where) for item in items) if n is not None})
        if not isinstance(text, str) or not text.strip() or not labels:
            if self.on_bad_row == "skip":
                return None
            raise DataError(
                f"{where}: an empty or missing text or label; fix the row, or pass --on-bad-row skip to drop such rows"
            )
        return Record(text, labels)


def held_out(text: str, fraction: float) -> bool:
    """Whether a text belongs to the validation share, by a hash of its content (the same in every pass)."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % HOLD_OUT_BUCKETS < fraction * HOLD_OUT_BUCKETS


def open_stream(spec: DataSpec) -> StreamSource:
    """A streaming source: a local file or folder of split files, or a hub id."""
    path = Path(spec.source).expanduser()
    source = spec.source
    config_name, revision = spec.config_name, spec.revision
    common = {
        "text_column": spec.text_column,
        "label_column": spec.label_column,
        "label_sep": spec.label_sep,
        "on_bad_row": spec.on_bad_row,
        "encoding": spec.encoding,
    }
    if path.is_dir():
        files = split_files(path)
        if not files:
            raise DataError(
                f"{path}: --streaming reads split files (train.jsonl, validation.csv, test.parquet ...); "
                "folder-per-class and save_to_disk folders load without --streaming"
            )
        stream = StreamSource(str(path), files, None, **common)  # type: ignore[arg-type]
        first = files.get("train", next(iter(files.values())))[0]
        stream.class_names = _parquet_class_names(first, spec.label_column)
        return stream
    if path.exists():
        if file_format(path) is None:
            raise DataError(f"{path}: --streaming reads jsonl, csv, tsv, parquet and fastText .txt files")
        split = split_of(path) or "train"
        stream = StreamSource(str(path), {split: [path]}, None, **common)  # type: ignore[arg-type]
        stream.class_names = _parquet_class_names(path, spec.label_column)
        return stream
    from grutext.readers import hub_offline, looks_like_path

    if looks_like_path(source):
        raise DataError(f"no such file or directory: {source}")
    import datasets

    with hub_offline() as offline:
        if offline:
            raise DataError(
                f"cannot stream {source!r} from the Hugging Face Hub: it cannot be reached (or HF_HUB_OFFLINE is "
                "set); drop --streaming to use a cached copy, or pass a local file"
            )
        try:
            loaded = datasets.load_dataset(source, config_name, revision=revision, streaming=True)
        except (FileNotFoundError, ConnectionError, ValueError) as exc:
            raise DataError(f"cannot stream {source!r} from the Hugging Face Hub: {exc}") from None
    hub = {SPLIT_ALIASES.get(name.lower(), name): ds for name, ds in loaded.items()}
    stream = StreamSource(source, None, hub, **common)  # type: ignore[arg-type]
    features = getattr(next(iter(hub.values())), "features", None)
    if features is not None:
        from grutext.readers import class_names

        names = class_names(features)
        column = spec.label_column or next((c for c in names if c.lower() in LABEL_NAMES), None)
        stream.class_names = names.get(column) if column else None
    return stream


def _parquet_class_names(path: Path, label_column: str | None) -> list[str] | None:
    if file_format(path) != "parquet":
        return None
    import pyarrow.parquet as pq

    from grutext.readers import class_names_from_schema

    names = class_names_from_schema(pq.ParquetFile(path).schema_arrow)
    column = label_column or next((c for c in names if c.lower() in LABEL_NAMES), None)
    return names.get(column) if column else None
