"""Open any supported source as labelled splits: pick and check the text and label columns, clean rows.

Sources: a Hugging Face hub id, one file (csv, tsv, json, jsonl, parquet, fastText .txt, and .gz of each),
a directory of split files, a folder-per-class directory, or a `save_to_disk` directory.

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
import math
import os
import random
import re
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO
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
BAD_ROW_POLICIES = ("fail", "skip")
FASTTEXT_PREFIX = "__label__"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_LABEL_FORBIDDEN = re.compile(r"[\t\n\r\x00-\x1f\x7f]")


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


@dataclass
class Split:
    """Clean texts and label names. Single-label rows hold exactly one name each."""

    texts: list[str]
    labels: list[list[str]]
    origin: str


@dataclass
class LabelledData:
    """The splits a command works on, with the choices made while reading them."""

    splits: dict[str, Split]
    source: str
    text_column: str
    label_column: str
    multi_label: bool
    skipped: dict[str, int] = field(default_factory=dict)  # bad rows dropped per split (--on-bad-row skip)
    validation_from: str = "validation split"
    # labels of the validation split that train lacks, and how many texts held each (see training_splits)
    unseen_in_validation: dict[str, int] = field(default_factory=dict)

    def label_names(self) -> list[str]:
        """Sorted label set of the training split (numeric names sort as numbers)."""
        names = {name for row in self.splits["train"].labels for name in row}
        return sort_labels(names)


def sort_labels(names: set[str]) -> list[str]:
    """Sort label names, numerically when all of them are integers ("2" before "10")."""
    if all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


# --------------------------------------------------------------------------------------------------
# Reading files


def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, expected a file") from None
    except PermissionError:
        raise DataError(f"cannot read {path}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
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


def _kind(values: Sequence[Any]) -> str:
    kinds = set()
    for value in values[:1000]:
        if value is None:
            continue
        if isinstance(value, bool):
            kinds.add("bool")
        elif isinstance(value, (int, float)):
            kinds.add("number")
        elif isinstance(value, str):
            kinds.add("str")
        elif isinstance(value, (list, tuple)):
            kinds.add("list")
        else:
            kinds.add("other")
    return kinds.pop() if len(kinds) == 1 else ("empty" if not kinds else "mixed")


def _columns_note(table: Table) -> str:
    return ", ".join(table.columns) or "(none)"


def choose_columns(table: Table, text_column: str | None, label_column: str | None) -> tuple[str, str]:
    """Pick the text and label columns, from flags or by name and type when that is unambiguous."""
    for flag, name in (("--text-column", text_column), ("--label-column", label_column)):
        if name is not None and name not in table.columns:
            raise DataError(
                f"column {name!r} not in {table.origin} (columns: {_columns_note(table)}); "
                f"pass {flag} with one of those"
            )
    cols = list(table.columns)
    if label_column is None:
        by_name = [c for c in cols if c.lower() in LABEL_NAMES and c != text_column]
        strong = [c for c in by_name if c.lower() in ("label", "labels")]
        if len(strong) == 1 or len(by_name) == 1:
            label_column = (strong or by_name)[0]
    if text_column is None:
        strings = [c for c in cols if c != label_column and _kind(table.columns[c]) == "str"]
        named = text_column_by_name(strings)
        if named is not None:
            text_column = named
        elif len(strings) == 1 and label_column is not None:
            text_column = strings[0]
        else:
            raise DataError(
                f"cannot tell which column of {table.origin} holds the texts "
                f"(columns: {_columns_note(table)}); pass --text-column"
            )
    if label_column is None:
        rest = [c for c in cols if c != text_column]
        if len(rest) != 1:
            raise DataError(
                f"cannot tell which column of {table.origin} holds the labels "
                f"(columns: {_columns_note(table)}); pass --label-column"
            )
        label_column = rest[0]
    if text_column == label_column:
        raise DataError(f"the text and label columns are both {text_column!r}; pass --text-column/--label-column")
    return text_column, label_column


def label_name(value: Any, names: list[str] | None, where: str) -> str | None:
    """One label value as a name; None means missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if not value.is_integer():
            raise DataError(f"{where}: label {value!r} is not a class (regression is not supported)")
        value = int(value)
    if isinstance(value, int):
        if names is not None:
            if value == -1:
                return None  # datasets' marker for an unlabelled row
            if not 0 <= value < len(names):
                raise DataError(f"{where}: label {value} is outside the {len(names)} class names")
            return names[value]
        return str(value)
    if isinstance(value, str):
        name = value.strip()
        if not name:
            return None
        if _LABEL_FORBIDDEN.search(name):
            raise DataError(f"{where}: label {name!r} contains a tab, newline or control character")
        return name
    raise DataError(f"{where}: label {value!r} is a {type(value).__name__}, expected a string or integer")


_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def typed_label(value: Any, untyped: bool) -> Any:
    """A label value as its format means it: where every value is text (CSV, TSV, fastText), a label that
    spells a number is that number, as the same label written in JSON is. So '0.5' among 0s and 1s is refused
    in every format, and '1' beside 'ham' mixes types in every format."""
    if untyped and isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        if _DECIMAL.fullmatch(text):
            return float(text)
    return value


class LabelCheck:
    """The one check every label value goes through, in memory or streamed, whatever the format: its type
    (made from text by `typed_label` where the format has none), one kind per column, then its name."""

    def __init__(self, column: str, origin: str, class_names: list[str] | None, untyped: bool) -> None:
        self.column, self.origin, self.class_names, self.untyped = column, origin, class_names, untyped
        self.first_of_kind: dict[str, str] = {}  # kind -> where it was first seen

    def name(self, value: Any, where: str) -> str | None:
        """One label value as a name (None: missing); a value of another kind than the column's is an error."""
        value = typed_label(value, self.untyped)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            kind = "int" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__
            self.first_of_kind.setdefault(kind, where.split(", ")[-1])
            if len(self.first_of_kind) > 1:
                kinds = " and ".join(sorted(self.first_of_kind))
                rows = ", ".join(self.first_of_kind.values())
                raise DataError(
                    f"column {self.column!r} of {self.origin} mixes label types ({kinds}, e.g. at {rows}); make "
                    "every label a string, or every label an integer"
                )
        return label_name(value, self.class_names, where)


def to_split(
    table: Table, text_column: str, label_column: str, *, label_sep: str | None, on_bad_row: str
) -> tuple[Split, int, bool]:
    """Clean one table into a Split. Returns the split, the number of skipped rows, and multi-label-ness."""
    raw_labels = table.columns[label_column]
    lists = [isinstance(v, (list, tuple)) for v in raw_labels]
    multi = label_sep is not None or any(lists)
    if any(lists) and not all(is_list or v is None for is_list, v in zip(lists, raw_labels, strict=True)):
        first = next(i for i, (is_list, v) in enumerate(zip(lists, raw_labels, strict=True)) if not is_list and v)
        raise DataError(
            f"column {label_column!r} of {table.origin} mixes lists of labels and single labels (e.g. at "
            f"{table.where(first)}); write every value as a list for multi-label data"
        )
    check = LabelCheck(label_column, table.origin, table.class_names.get(label_column), table.untyped)
    texts: list[str] = []
    labels: list[list[str]] = []
    bad: list[int] = []
    for i, (text, value) in enumerate(zip(table.columns[text_column], raw_labels, strict=True)):
        where = table.where(i)
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        if not isinstance(text, str) and text is not None:
            raise DataError(f"{where}: text is a {type(text).__name__}, expected a string")
        if multi:
            items = value if isinstance(value, (list, tuple)) else ([] if value is None else [value])
            if label_sep is not None:
                items = [part for item in items for part in (str(item).split(label_sep) if item is not None else [])]
            row = [n for n in (check.name(item, where) for item in items) if n is not None]
            row = sorted(set(row))
            missing = value is None
        else:
            if isinstance(value, (list, tuple)):
                raise DataError(f"{where}: a list label in a single-label column; use one label per row")
            name = check.name(value, where)
            row = [] if name is None else [name]
            missing = name is None
        if text is None or not text.strip() or missing:
            bad.append(i)
            continue
        texts.append(text)
        labels.append(row)
    if bad and on_bad_row == "fail":
        at = table.where(bad[0]).split(", ")[-1]
        if bad[0] in table.problems:
            raise DataError(
                f"{table.origin}, {at}: {table.problems[bad[0]]} ({len(bad)} bad row(s) in all); fix them, "
                "or pass --on-bad-row skip to drop them"
            )
        raise DataError(
            f"{table.origin}: {len(bad)} row(s) with an empty or missing text or label (first at "
            f"{at}); fix them, or pass --on-bad-row skip to drop them"
        )
    if not texts:
        raise DataError(f"{table.origin}: no usable rows (all {len(table)} have an empty text or label)")
    return Split(texts, labels, table.origin), len(bad), multi


def carve_validation(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """A stratified `fraction` of train becomes validation; classes with a single example stay in train.

    Copies of one text go to the same side: a validation text that is also a training text scores
    memory, not generalisation, and misleads early stopping. Carved row by row, 269 of mpqa's 956
    validation phrases (28%) were training phrases too, while none of its test phrases are. Where a
    class cannot be carved that way (every text in it repeated too often), that class is carved row by row."""
    rng = random.Random(seed)
    copies: dict[str, list[int]] = {}
    for i, text in enumerate(train.texts):
        copies.setdefault(text, []).append(i)
    by_class: dict[str, list[list[int]]] = {}
    for group in copies.values():
        row = train.labels[group[0]]
        by_class.setdefault(row[0] if row else "", []).append(group)
    val_idx: list[int] = []
    for key in sorted(by_class):
        groups = by_class[key]
        rows = sum(len(g) for g in groups)
        rng.shuffle(groups)
        take = round(fraction * rows)
        if take == 0 and rows >= 2 and fraction * rows >= 0.2:
            take = 1
        taken: list[int] = []
        for group in groups:
            if len(taken) + len(group) <= take:
                taken.extend(group)
        if take and not taken:  # only texts with many copies: row by row
            flat = sorted(i for g in groups for i in g)
            rng.shuffle(flat)
            taken = flat[:take]
        val_idx.extend(taken)
    chosen = _keep_every_label(train, copies, set(val_idx))
    val_idx = list(chosen)
    if not chosen:
        raise DataError(
            f"{train.origin}: too few rows ({len(train.texts)}) to set aside a validation split; "
            "add rows or provide a validation split"
        )
    rest = [i for i in range(len(train.texts)) if i not in chosen]
    val_idx.sort()

    def pick(ids: list[int], origin: str) -> Split:
        return Split([train.texts[i] for i in ids], [train.labels[i] for i in ids], origin)

    return pick(rest, train.origin), pick(val_idx, f"{train.origin} (validation carved out)")


def _keep_every_label(train: Split, copies: dict[str, list[int]], chosen: set[int]) -> set[int]:
    """Give back to train, for every label that the carve took whole, its smallest group of copies: a label
    the training part never shows cannot be learnt, and a model without it then refused its own test split
    (a multi-label set stratified by each row's first label carved a one-text label away)."""
    left = Counter(name for i, row in enumerate(train.labels) if i not in chosen for name in row)
    for name in sorted({name for i in chosen for name in train.labels[i]}):
        if left[name]:
            continue
        groups = [[i for i in g if i in chosen] for g in copies.values() if name in train.labels[g[0]]]
        back = min((g for g in groups if g), key=lambda g: (len(g), g[0]))
        chosen.difference_update(back)
        for i in back:
            left.update(train.labels[i])
    return chosen


def load_labelled(
    source: str,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    config_name: str | None = None,
    revision: str | None = None,
    encoding: str = "utf-8",
    label_sep: str | None = None,
    on_bad_row: str = "fail",
    splits: Sequence[str] | None = None,
) -> LabelledData:
    """Read and clean a labelled source. `splits` limits which splits are cleaned (all by default)."""
    if on_bad_row not in BAD_ROW_POLICIES:
        raise DataError(f"on_bad_row must be one of {', '.join(BAD_ROW_POLICIES)}")
    tables = open_tables(source, config_name=config_name, revision=revision, encoding=encoding)
    wanted = list(tables) if splits is None else [s for s in splits if s in tables]
    first = tables[wanted[0]] if wanted else next(iter(tables.values()))
    text_column, label_column = choose_columns(first, text_column, label_column)
    result: dict[str, Split] = {}
    skipped: dict[str, int] = {}
    multi_any = False
    for name in wanted:
        table = tables[name]
        choose_columns(table, text_column, label_column)  # every split must have both columns
        split, n_bad, multi = to_split(table, text_column, label_column, label_sep=label_sep, on_bad_row=on_bad_row)
        result[name] = split
        skipped[name] = n_bad
        multi_any = multi_any or multi
    return LabelledData(result, source, text_column, label_column, multi_any, skipped)


def training_splits(data: LabelledData, val_fraction: float, seed: int) -> LabelledData:
    """Name the train split and make sure there is a validation split, carving one if needed."""
    splits = dict(data.splits)
    if "train" not in splits:
        if len(splits) != 1:
            raise DataError(f"{data.source}: no 'train' split (splits: {', '.join(splits)})")
        splits = {"train": next(iter(splits.values()))}
    validation_from = "validation split"
    if "validation" not in splits:
        splits["train"], splits["validation"] = carve_validation(splits["train"], val_fraction, seed)
        validation_from = f"stratified {val_fraction:.0%} of train, copies of a text together (seed {seed})"
    labels = {n for row in splits["train"].labels for n in row}
    splits["validation"], data.unseen_in_validation = _without_unseen(splits["validation"], labels, data.multi_label)
    if not data.multi_label and len(labels) < 2:
        only = next(iter(labels)) if labels else "(none)"
        raise DataError(
            f"{data.source}: the training data has a single class ({only!r}); a classifier needs at least two"
        )
    data.splits = splits
    data.validation_from = validation_from
    return data


def _without_unseen(split: Split, known: set[str], multi_label: bool) -> tuple[Split, dict[str, int]]:
    """A validation split without the labels train lacks: a single-label text holding one is dropped, a
    multi-label text loses it. No model can predict such a label, and early stopping cannot learn from it."""
    unseen = Counter(name for row in split.labels for name in row if name not in known)
    if not unseen:
        return split, {}
    texts, rows = [], []
    for text, row in zip(split.texts, split.labels, strict=True):
        kept = [name for name in row if name in known]
        if kept or (multi_label and row):
            texts.append(text)
            rows.append(kept)
    if not texts:
        raise DataError(f"{split.origin}: no validation text has a label the training split has")
    return Split(texts, rows, split.origin), dict(sorted(unseen.items()))


def pick_split(tables_or_data: LabelledData, split: str | None) -> tuple[str, Split]:
    """The split to evaluate on: the one asked for, else test, else the only one."""
    splits = tables_or_data.splits
    if split is not None:
        key = SPLIT_ALIASES.get(split.lower(), split)
        if key not in splits:
            raise DataError(f"no {split!r} split in {tables_or_data.source} (splits: {', '.join(splits)})")
        return key, splits[key]
    if "test" in splits:
        return "test", splits["test"]
    if len(splits) == 1:
        return next(iter(splits.items()))
    raise DataError(f"{tables_or_data.source} has no 'test' split; pass --split (splits: {', '.join(splits)})")


# --------------------------------------------------------------------------------------------------
# Streaming texts for predict: constant memory, one record per output line, no `datasets` import.


def text_column_by_name(columns: Sequence[str]) -> str | None:
    """The one text-column rule by name, for training and predict: `text`, else the only column with a
    usual text name (sentence, content, review, ...)."""
    if "text" in columns:
        return "text"
    named = [c for c in columns if c.lower() in TEXT_NAMES]
    return named[0] if len(named) == 1 else None


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
