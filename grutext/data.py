"""Labelled splits from any source grutext.readers opens: pick and check the text and label columns, check
every label the one way (LabelCheck), clean rows, carve a validation split. No torch here.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grutext.errors import DataError
from grutext.readers import (
    LABEL_NAMES,
    SPLIT_ALIASES,
    Table,
    open_tables,
    text_column_by_name,
)

BAD_ROW_POLICIES = ("fail", "skip")
_LABEL_FORBIDDEN = re.compile(r"[\t\n\r\x00-\x1f\x7f]")


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
