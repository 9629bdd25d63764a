"""Open any supported source as tables of named columns: one file (csv, tsv, json, jsonl, parquet, fastText
.txt, and .gz of each), a directory of split files, a folder-per-class directory, a `save_to_disk` directory, or
a Hugging Face hub id. grutext.data makes labelled splits of them; grutext.streaming reads the same formats a
record at a time.

Local text formats are parsed here rather than through `datasets.load_dataset`, so that an error can name
the file and line, and so that nothing is cached or converted behind the user's back. `datasets` is
imported only for hub ids, `save_to_disk` folders and parquet metadata. No torch here.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from grutext.errors import DataError

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".txt": "fasttext",
}
TEXT_NAMES = (
    "text",
    "sentence",
    "content",
    "review",
    "document",
    "comment",
    "body",
    "tweet",
    "message",
    "sms",
)
LABEL_NAMES = (
    "label",
    "labels",
    "class",
    "category",
    "target",
    "sentiment",
    "topic",
    "intent",
    "emotion",
    "y",
)
FASTTEXT_PREFIX = "__label__"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


@dataclass
class Table:
    """One split as named columns, plus what is needed to point at a row in an error message."""

    columns: dict[str, list[Any]]
    origin: str  # a file or dataset split, for messages
    locations: list[str] | None = None  # per row, e.g. "line 7" or "neg/001.txt"
    class_names: dict[str, list[str]] = field(default_factory=dict)  # ClassLabel names per column
    problems: dict[int, str] = field(default_factory=dict)  # why a row is unreadable (a ragged CSV row)
    untyped: bool = False  # values are text whatever they mean (CSV, TSV, fastText, folder names)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def where(self, row: int) -> str:
        loc = self.locations[row] if self.locations is not None else f"row {row + 1}"
        return f"{self.origin}, {loc}"


# --------------------------------------------------------------------------------------------------
# Reading files


def unreadable(path: Path, exc: OSError, expected: str = "a file", missing: str = "check the path") -> DataError:
    """The DataError for a file that could not be opened: what went wrong, and what to do about it."""
    if isinstance(exc, FileNotFoundError):
        return DataError(f"no such file: {path}; {missing}")
    if isinstance(exc, IsADirectoryError):
        return DataError(f"{path} is a directory; pass {expected}")
    if isinstance(exc, PermissionError):
        return DataError(f"cannot read {path}: permission denied; check the file's permissions")
    return DataError(f"cannot read {path}: {exc.strerror or exc}")


def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise unreadable(path, exc) from None
    if path.suffix.lower() == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} is not a valid gzip file ({exc}); decompress it or fix the name") from None
    return raw


def decode_text(raw: bytes, origin: str, encoding: str = "utf-8") -> str:
    """Decode a whole file; an error names the line and how to convert the file."""
    if b"\x00" in raw[:8192] and not encoding.lower().startswith("utf-16"):
        raise DataError(f"{origin} looks like a binary file (it holds NUL bytes), not text; check the path")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{origin}, line {line}: bytes that are not valid {encoding}; convert the file "
            f"(e.g. iconv -f latin1 -t utf-8) or pass --encoding with its real encoding"
        ) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}; pass a Python codec name such as utf-8 or latin-1") from None
    return text.removeprefix("\ufeff")


def file_format(path: Path) -> str | None:
    """The format implied by a file name, looking through a trailing .gz."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return FORMATS.get(suffixes[-1]) if suffixes else None


def split_of(path: Path) -> str | None:
    """Which split a file name stands for: train.csv, dev.jsonl.gz, test-00000-of-00001.parquet, sms_test.csv,
    imdb-train.jsonl ... (the split's name first, or last after a _ or -)."""
    words = re.split(r"[_-]", path.name.split(".")[0].lower())
    for word in (words[0], words[-1]):
        if word in SPLIT_ALIASES:
            return SPLIT_ALIASES[word]
    return None


def read_file(path: Path, encoding: str = "utf-8") -> Table:
    """Read one supported file into a Table."""
    fmt = file_format(path)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"{path}: unsupported file type {''.join(path.suffixes) or '(none)'}; use one of {known}")
    if fmt == "parquet":
        return _read_parquet(path)
    text = decode_text(_open_bytes(path), str(path), encoding)
    if not text.strip():
        needs = {
            "csv": "a header line, then rows with a text and a label",
            "tsv": "a header line, then rows with a text and a label",
            "fasttext": "lines such as '__label__pos some text'",
        }.get(fmt, 'JSON records with a text and a label, such as {"text": "...", "label": "pos"}')
        raise DataError(f"{path} is empty; it needs {needs}")
    if fmt in ("csv", "tsv"):
        return _read_csv(text, str(path), "\t" if fmt == "tsv" else ",")
    if fmt == "json" and text.lstrip().startswith("["):
        return _read_json_array(text, str(path))
    if fmt == "fasttext":
        return _read_fasttext(text, str(path))
    return _read_jsonl(text, str(path))


def _raise_csv_limit() -> None:
    # csv refuses fields over 128 KiB by default; a long document is not an error.
    limit = 2**31 - 1
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def iter_csv(lines: Iterable[str], delimiter: str, origin: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every CSV/TSV record, the header first; a quoting error names its line.
    Shared by the training reader and predict's streaming reader."""
    _raise_csv_limit()
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    kind = "TSV" if delimiter == "\t" else "CSV"
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(
                f"{origin}, line {reader.line_num}: malformed {kind} ({exc}); check the quoting on that line"
            ) from None
        yield reader.line_num, row


def _read_csv(text: str, origin: str, delimiter: str) -> Table:
    rows = iter_csv(io.StringIO(text, newline=""), delimiter, origin)
    _, header = next(rows)
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise DataError(f"{origin}: the header repeats column names {dupes}; give each column its own name")
    columns: dict[str, list[Any]] = {name: [] for name in header}
    locations: list[str] = []
    problems: dict[int, str] = {}
    for line, row in rows:
        if not row:
            continue  # a blank line
        if len(row) != len(header):
            # A bad row, dropped or reported by the --on-bad-row policy like a row with a missing label.
            hint = (
                "a value is missing (an empty label?)"
                if len(row) < len(header)
                else "quote fields that contain the delimiter"
            )
            problems[len(locations)] = f"{len(row)} fields where the header has {len(header)}: {hint}"
        values: list[str | None] = list(row) if len(row) == len(header) else [None] * len(header)
        for name, value in zip(header, values, strict=True):
            columns[name].append(value)
        locations.append(f"line {line}")
    if not locations:
        raise DataError(f"{origin} has a header ({', '.join(header)}) but no rows")
    return Table(columns, origin, locations, problems=problems, untyped=True)


def _rows_to_table(rows: list[dict[str, Any]], locations: list[str], origin: str) -> Table:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {name: [row.get(name) for row in rows] for name in names}
    return Table(columns, origin, locations)


def iter_json_lines(lines: Iterable[str], origin: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every JSON Lines line; a blank line gives None. Shared by the training
    reader and predict's streaming reader."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            yield number, None
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{origin}, line {number}: invalid JSON ({exc.msg} at column {exc.colno})") from None


def _read_jsonl(text: str, origin: str) -> Table:
    rows: list[dict[str, Any]] = []
    locations: list[str] = []
    for number, row in iter_json_lines(text.split("\n"), origin):
        if row is None:
            continue
        if not isinstance(row, dict):
            raise DataError(f"{origin}, line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
        locations.append(f"line {number}")
    if not rows:
        raise DataError(f"{origin} holds no JSON records")
    return _rows_to_table(rows, locations, origin)


def _read_json_array(text: str, origin: str) -> Table:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{origin}, line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise DataError(f"{origin}: expected a JSON array of objects or JSON Lines")
    if not data:
        raise DataError(f"{origin} holds an empty JSON array")
    return _rows_to_table(data, [f"record {i + 1}" for i in range(len(data))], origin)


def _read_fasttext(text: str, origin: str) -> Table:
    texts: list[str] = []
    labels: list[list[str]] = []
    locations: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        words = line.split()
        if not words:
            continue
        names = []
        while words and words[0].startswith(FASTTEXT_PREFIX):
            names.append(words.pop(0)[len(FASTTEXT_PREFIX) :])
        if not names:
            raise DataError(
                f"{origin}, line {number}: no {FASTTEXT_PREFIX} prefix; .txt files must be in fastText form "
                f"('{FASTTEXT_PREFIX}pos some text'), or use csv/jsonl"
            )
        texts.append(" ".join(words))
        labels.append(names)
        locations.append(f"line {number}")
    if not texts:
        raise DataError(f"{origin} holds no records")
    if any(len(names) > 1 for names in labels):
        return Table({"text": texts, "labels": labels}, origin, locations, untyped=True)
    return Table({"text": texts, "label": [names[0] for names in labels]}, origin, locations, untyped=True)


def _read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".gz":
            table = pq.read_table(pa.BufferReader(_open_bytes(path)))
        else:
            table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path} is not a readable parquet file ({exc})") from None
    if table.num_rows == 0:
        raise DataError(f"{path} has columns ({', '.join(table.column_names)}) but no rows")
    return Table(table.to_pydict(), str(path), class_names=class_names_from_schema(table.schema))


def class_names_from_schema(schema: Any) -> dict[str, list[str]]:
    """ClassLabel names that `datasets` stores in parquet metadata, so labels stay names."""
    if not schema.metadata or b"huggingface" not in schema.metadata:
        return {}
    from datasets import Features

    try:
        return class_names(Features.from_arrow_schema(schema))
    except (ValueError, KeyError, TypeError):
        return {}


def class_names(features: Any) -> dict[str, list[str]]:
    from datasets import ClassLabel, Sequence

    names: dict[str, list[str]] = {}
    for column, feature in features.items():
        inner = feature.feature if isinstance(feature, Sequence) else feature
        if isinstance(feature, list) and feature:
            inner = feature[0]
        if isinstance(inner, ClassLabel):
            names[column] = list(inner.names)
    return names


# --------------------------------------------------------------------------------------------------
# Directories


def _is_save_to_disk(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def split_files(path: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for child in sorted(path.iterdir()):
        if child.is_file() and file_format(child) is not None and (split := split_of(child)) is not None:
            found.setdefault(split, []).append(child)
    for split, files in found.items():
        formats = {file_format(f) for f in files}
        if len(formats) > 1:
            names = ", ".join(f.name for f in files)
            raise DataError(f"{path}: several files for the {split} split ({names}); keep one format per split")
    return found


def _class_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_class_folders(root: Path, origin: str, encoding: str) -> Table:
    texts: list[str] = []
    labels: list[str] = []
    locations: list[str] = []
    for class_dir in _class_dirs(root):
        for file in sorted(class_dir.iterdir()):
            if not file.is_file() or file.name.startswith("."):
                continue
            where = f"{class_dir.name}/{file.name}"
            texts.append(decode_text(_open_bytes(file), f"{root / where}", encoding))
            labels.append(class_dir.name)
            locations.append(where)
    if not texts:
        raise DataError(f"{root}: the class folders hold no files")
    return Table({"text": texts, "label": labels}, origin, locations, untyped=True)


def _read_directory(path: Path, encoding: str) -> dict[str, Table]:
    if _is_save_to_disk(path):
        return _read_save_to_disk(path)
    found = split_files(path)
    if found:
        tables: dict[str, Table] = {}
        for split, files in found.items():
            parts = [read_file(f, encoding) for f in files]
            tables[split] = parts[0] if len(parts) == 1 else _concat(parts, f"{path}/{split}.*")
        return tables
    subdirs = _class_dirs(path)
    split_dirs = {SPLIT_ALIASES[d.name.lower()]: d for d in subdirs if d.name.lower() in SPLIT_ALIASES}
    if split_dirs and all(_class_dirs(d) for d in split_dirs.values()):
        return {split: _read_class_folders(d, str(d), encoding) for split, d in split_dirs.items()}
    if len(subdirs) >= 1 and not split_dirs:
        return {"train": _read_class_folders(path, str(path), encoding)}
    raise DataError(
        f"{path}: found no split files (train.jsonl, test.csv, ...), no folder-per-class layout "
        "(<label>/*.txt or train/<label>/*.txt) and no save_to_disk dataset"
    )


def _concat(parts: list[Table], origin: str) -> Table:
    names: dict[str, None] = {}
    for part in parts:
        names.update(dict.fromkeys(part.columns))
    columns: dict[str, list[Any]] = {name: [] for name in names}
    locations: list[str] = []
    problems: dict[int, str] = {}
    for part in parts:
        n = len(part)
        problems.update({len(locations) + i: why for i, why in part.problems.items()})
        for name in names:
            columns[name].extend(part.columns.get(name, [None] * n))
        locations.extend(f"{part.origin}, {part.where(i).split(', ')[-1]}" for i in range(n))
    return Table(columns, origin, locations, parts[0].class_names, problems, all(p.untyped for p in parts))


def _read_save_to_disk(path: Path) -> dict[str, Table]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read the save_to_disk dataset ({exc})") from None
    return _tables_from_datasets(loaded, str(path))


def _tables_from_datasets(loaded: Any, origin: str) -> dict[str, Table]:
    import datasets

    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    tables: dict[str, Table] = {}
    for name, ds in loaded.items():
        split = SPLIT_ALIASES.get(name.lower(), name)
        tables[split] = Table(ds.to_dict(), f"{origin} [{name}]", class_names=class_names(ds.features))
    return tables


# --------------------------------------------------------------------------------------------------
# The Hugging Face Hub


def _hub_reachable(timeout: float = 1.5) -> bool:
    """Open a TCP connection to the hub, in a thread so that a hanging DNS lookup cannot stall us."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


@contextlib.contextmanager
def hub_offline() -> Iterator[bool]:
    """Whether the hub is to be treated as offline (HF_HUB_OFFLINE, or no answer within two seconds); while
    the block runs, `datasets` and `huggingface_hub` are told so, and their settings are restored after it, so
    a program that embeds grutext keeps its own."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") or not _hub_reachable()
    if not offline:
        yield False
        return
    import datasets.config
    import huggingface_hub.constants

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    saved = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield True
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _read_hub(name: str, config_name: str | None, revision: str | None) -> dict[str, Table]:
    offline_env = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    import datasets

    with hub_offline():
        try:
            # Datasets' loading scripts are not supported (so no remote code can run): only data files load.
            loaded = datasets.load_dataset(name, config_name, revision=revision)
        except ConnectionError:
            why = "HF_HUB_OFFLINE is set" if offline_env else "the Hugging Face Hub cannot be reached"
            raise DataError(
                f"no file or folder {name!r} here, and no hub dataset by that name in the local cache ({why}); "
                "check the path, or connect to the internet to download it from the Hub"
            ) from None
        except FileNotFoundError:
            raise DataError(
                f"no file or folder {name!r} here, and no dataset {name!r} on the Hugging Face Hub; check the "
                "spelling (log in with `hf auth login` if it is a private or gated hub dataset)"
            ) from None
        except ValueError as exc:
            raise DataError(f"cannot load {name!r} from the Hub: {exc}") from None
    return _tables_from_datasets(loaded, name)


def looks_like_path(source: str) -> bool:
    return (
        source.startswith((".", "/", "~"))
        or os.sep in source.strip("/").replace("/", "", 1)
        or file_format(Path(source)) is not None
        or not _HUB_ID.match(source)
    )


def open_tables(
    source: str, *, config_name: str | None = None, revision: str | None = None, encoding: str = "utf-8"
) -> dict[str, Table]:
    """Read every split of a source into Tables, keyed by train / validation / test (or the source's names)."""
    path = Path(source).expanduser()
    if path.is_dir():
        tables = _read_directory(path, encoding)
        order = ["train", "validation", "test"]
        return dict(sorted(tables.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 3, kv[0])))
    if path.exists():
        return {split_of(path) or "train": read_file(path, encoding)}
    if looks_like_path(source):
        raise DataError(f"no such file or directory: {source}")
    return _read_hub(source, config_name, revision)


# --------------------------------------------------------------------------------------------------
# Columns and labels


def text_column_by_name(columns: Sequence[str]) -> str | None:
    """The one text-column rule by name, for training and predict: `text`, else the only column with a
    usual text name (sentence, content, review, ...)."""
    if "text" in columns:
        return "text"
    named = [c for c in columns if c.lower() in TEXT_NAMES]
    return named[0] if len(named) == 1 else None
