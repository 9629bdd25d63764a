"""Every DATASET form, column detection, label handling and the errors on bad input."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from grutext.data import carve_validation, load_labelled, pick_split, training_splits
from grutext.errors import DataError
from grutext.readers import open_tables
from tests.conftest import sentiment_rows, write_jsonl

ROWS = sentiment_rows(20)


def write_csv(path: Path, rows: list[dict[str, str]], delimiter: str = ",") -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def check_rows(source: Path | str, **kwargs: object) -> None:
    data = load_labelled(str(source), **kwargs)  # type: ignore[arg-type]
    split = data.splits["train"]
    assert split.texts == [r["text"] for r in ROWS]
    assert split.labels == [[r["label"]] for r in ROWS]
    assert not data.multi_label


def test_csv_tsv_json_jsonl_and_gz(tmp_path: Path) -> None:
    check_rows(write_csv(tmp_path / "a.csv", ROWS))
    check_rows(write_csv(tmp_path / "a.tsv", ROWS, delimiter="\t"))
    check_rows(write_jsonl(tmp_path / "a.jsonl", ROWS))
    (tmp_path / "b.json").write_text(json.dumps(ROWS), encoding="utf-8")
    check_rows(tmp_path / "b.json")
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress((tmp_path / "a.jsonl").read_bytes()))
    check_rows(gz)


def test_fasttext_txt(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("".join(f"__label__{r['label']} {r['text']}\n" for r in ROWS), encoding="utf-8")
    check_rows(path)
    bad = tmp_path / "bad.txt"
    bad.write_text("__label__a fine\nno label here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: no __label__ prefix"):
        load_labelled(str(bad))


def test_parquet_and_save_to_disk_keep_classlabel_names(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict(
        {"sentence": [r["text"] for r in ROWS], "label": [int(r["label"] == "pos") for r in ROWS]}, features=features
    )
    ds.to_parquet(str(tmp_path / "a.parquet"))
    check_rows(tmp_path / "a.parquet")
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "saved"))
    data = load_labelled(str(tmp_path / "saved"))
    assert set(data.splits) == {"train", "test"} and data.text_column == "sentence"
    assert data.splits["test"].labels[0] == [ROWS[0]["label"]]


def test_split_directory(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", ROWS)
    write_csv(tmp_path / "dev.csv", ROWS[:4])
    write_jsonl(tmp_path / "test.jsonl", ROWS[:6])
    (tmp_path / "README.md").write_text("not data")
    data = load_labelled(str(tmp_path))
    assert {k: len(v.texts) for k, v in data.splits.items()} == {"train": 20, "validation": 4, "test": 6}


def test_folder_per_class_with_and_without_splits(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for i, row in enumerate(ROWS):
            folder = tmp_path / "split" / split / row["label"]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:03}.txt").write_text(row["text"], encoding="utf-8")
    data = load_labelled(str(tmp_path / "split"))
    assert set(data.splits) == {"train", "test"}
    assert sorted(data.splits["train"].texts) == sorted(r["text"] for r in ROWS)
    flat = load_labelled(str(tmp_path / "split" / "train"))
    assert set(flat.splits) == {"train"} and flat.label_names() == ["neg", "pos"]


def test_folder_per_class_names_a_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.txt").write_bytes("caf\xe9 £5".encode("latin-1"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "1.txt").write_text("fine")
    with pytest.raises(DataError, match=r"a/1.txt, line 1: bytes that are not valid utf-8.*--encoding"):
        load_labelled(str(tmp_path))
    assert load_labelled(str(tmp_path), encoding="latin-1").splits["train"].texts[0] == "café £5"


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"text": "t", "label": "l"}, ("text", "label")),
        ({"review": "t", "stars": "l"}, ("review", "stars")),
        ({"sentence": "t", "idx": 1, "label": "l"}, ("sentence", "label")),
        ({"content": "t", "category": "l", "id": "x"}, ("content", "category")),
    ],
)
def test_column_detection(tmp_path: Path, columns: dict[str, object], expected: tuple[str, str]) -> None:
    rows = [
        {
            k: (v if k not in expected else (f"text {i}" if k == expected[0] else f"c{i % 2}"))
            for k, v in columns.items()
        }
        for i in range(6)
    ]
    data = load_labelled(str(write_jsonl(tmp_path / "a.jsonl", rows)))  # type: ignore[arg-type]
    assert (data.text_column, data.label_column) == expected


def test_ambiguous_columns_list_the_columns(tmp_path: Path) -> None:
    rows = [{"title": "a", "body": "b", "stars": "1", "kind": "x"}] * 3
    path = write_jsonl(tmp_path / "a.jsonl", rows)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"columns: title, body, stars, kind\); pass --label-column"):
        load_labelled(str(path))
    assert load_labelled(str(path), label_column="stars").text_column == "body"  # the one text-like name
    data = load_labelled(str(path), text_column="title", label_column="stars")
    assert data.splits["train"].texts == ["a"] * 3
    two = write_jsonl(tmp_path / "b.jsonl", [{"question": "q", "answer": "a", "label": "x"}] * 3)
    with pytest.raises(DataError, match=r"texts \(columns: question, answer, label\); pass --text-column"):
        load_labelled(str(two))
    with pytest.raises(DataError, match=r"column 'nope' not in .*title, body, stars, kind"):
        load_labelled(str(path), text_column="nope")


def test_integer_labels_become_names_and_sort_numerically(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": i % 11} for i in range(22)]
    data = load_labelled(str(write_jsonl(tmp_path / "a.jsonl", rows)))  # type: ignore[arg-type]
    assert data.label_names() == [str(i) for i in range(11)]


def test_mixed_label_types_are_an_error(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": "1"}]
    with pytest.raises(DataError, match=r"mixes label types \(int and str"):
        load_labelled(str(write_jsonl(tmp_path / "a.jsonl", rows)))  # type: ignore[arg-type]


def test_bad_rows_fail_by_default_and_skip_on_request(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [*ROWS, {"text": "", "label": "pos"}, {"text": "x", "label": None}]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    with pytest.raises(DataError, match=r"2 row\(s\) with an empty or missing text or label \(first at line 21\)"):
        load_labelled(str(path))
    data = load_labelled(str(path), on_bad_row="skip")
    assert data.skipped == {"train": 2} and len(data.splits["train"].texts) == 20


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", r"is empty; it needs a header line"),
        ("empty.jsonl", b"\n\n", r"is empty; it needs JSON records"),
        ("empty.txt", b" \n", r"is empty; it needs lines such as '__label__pos some text'"),
        ("header.csv", b"text,label\n", r"has a header \(text, label\) but no rows"),
        ("bad.csv", b'text,label\n"ok",a\n"broken,b\n', r"line 3: malformed CSV"),
        ("short.csv", b"text,label\nok,a\nnope\n", r"line 3: 1 fields where the header has 2"),
        ("bad.jsonl", b'{"text": "a", "label": "x"}\n{"text": \n', r"line 2: invalid JSON"),
        ("binary.csv", bytes(range(256)) * 4, r"looks like a binary file"),
        ("latin.csv", "text,label\ncaf\xe9,a\n".encode("latin-1"), r"line 2: bytes that are not valid utf-8"),
        ("data.xlsx", b"PK", r"unsupported file type .xlsx"),
        ("bad.parquet", b"not parquet", r"not a readable parquet file"),
        ("bad.jsonl.gz", b"not gzip", r"not a valid gzip file"),
    ],
)
def test_bad_files_are_clean_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_labelled(str(path))
    assert path.read_bytes() == content


def test_missing_path_and_offline_hub_are_fast_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file or directory: .*nope.csv"):
        load_labelled(str(tmp_path / "nope.csv"))
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"no hub dataset by that name in the local cache \(HF_HUB_OFFLINE is set\)"):
        load_labelled("someone/surely-not-cached-dataset")
    assert time.perf_counter() - start < 5


def test_ten_megabyte_line_is_read(tmp_path: Path) -> None:
    big = "word " * 2_000_000
    path = write_jsonl(tmp_path / "big.jsonl", [{"text": big, "label": "a"}, {"text": "small", "label": "b"}])
    assert len(load_labelled(str(path)).splits["train"].texts[0]) == len(big)


def test_validation_is_carved_stratified_and_seeded(tmp_path: Path) -> None:
    data = load_labelled(str(write_jsonl(tmp_path / "a.jsonl", sentiment_rows(100))))
    a = training_splits(data, 0.1, seed=1)
    assert len(a.splits["validation"].texts) == 10
    assert sorted(r[0] for r in a.splits["validation"].labels) == ["neg"] * 5 + ["pos"] * 5
    b = carve_validation(load_labelled(str(tmp_path / "a.jsonl")).splits["train"], 0.1, seed=1)[1]
    assert b.texts == a.splits["validation"].texts
    c = carve_validation(load_labelled(str(tmp_path / "a.jsonl")).splits["train"], 0.1, seed=2)[1]
    assert c.texts != b.texts


def test_copies_of_a_text_stay_on_one_side_of_the_carve(tmp_path: Path) -> None:
    # Phrase datasets repeat texts: a validation copy of a training text would score memory
    rows = [{"text": f"phrase {i % 40}", "label": "pos" if i % 2 else "neg"} for i in range(200)]
    train, val = carve_validation(load_labelled(str(write_jsonl(tmp_path / "a.jsonl", rows))).splits["train"], 0.1, 3)
    assert val.texts and not set(val.texts) & set(train.texts)
    assert len(val.texts) == 20 and sorted(r[0] for r in val.labels) == ["neg"] * 10 + ["pos"] * 10
    # Without copies the carve is the row-by-row one, so a seed picks the same rows as before
    unique = load_labelled(str(write_jsonl(tmp_path / "b.jsonl", sentiment_rows(100)))).splits["train"]
    assert len(set(unique.texts)) == 100
    assert carve_validation(unique, 0.1, 1)[1].texts == [unique.texts[i] for i in (2, 5, 8, 19, 31, 43, 48, 95, 96, 98)]
    # A class made of one repeated text cannot be carved by text: it is carved row by row
    same = [{"text": "yes", "label": "a"}] * 10 + [{"text": "no", "label": "b"}] * 10
    val = carve_validation(load_labelled(str(write_jsonl(tmp_path / "c.jsonl", same))).splits["train"], 0.1, 0)[1]
    assert sorted(val.texts) == ["no", "yes"]


def test_single_class_is_an_error(tmp_path: Path) -> None:
    data = load_labelled(str(write_jsonl(tmp_path / "a.jsonl", [{"text": f"t{i}", "label": "a"} for i in range(9)])))
    with pytest.raises(DataError, match=r"single class \('a'\)"):
        training_splits(data, 0.1, 0)


def test_pick_split_defaults_to_test_or_the_only_split(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d" / "train.jsonl", ROWS)
    write_jsonl(tmp_path / "d" / "test.jsonl", ROWS[:2])
    assert pick_split(load_labelled(str(tmp_path / "d")), None)[0] == "test"
    only = load_labelled(str(write_jsonl(tmp_path / "x.jsonl", ROWS)))
    assert pick_split(only, None)[0] == "train"
    assert pick_split(load_labelled(str(tmp_path / "d")), "train")[0] == "train"


def test_labels_with_tabs_or_newlines_are_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "a", "label": "x\ty"}])
    with pytest.raises(DataError, match="tab, newline"):
        load_labelled(str(path))


def test_open_tables_reports_directory_without_data(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(DataError, match="found no split files"):
        open_tables(str(tmp_path))


def test_rows_hold_token_ids_flat_and_pad_as_lists_do() -> None:
    import numpy as np

    from grutext.batching import inference_batches, pad
    from grutext.ragged import Rows

    lists = [[5, 6, 7], [], [300_000, 2], [9] * 9, [1]]
    rows = Rows.join([Rows.of(lists[:2]), Rows.of([]), Rows.of(lists[2:])])
    assert len(rows) == 5 and [r.tolist() for r in rows] == lists and rows.values.dtype == np.int32
    for index in ([0, 1, 2, 3, 4], [3, 1], [2]):
        for got, want in zip(pad(rows, index), pad(lists, index), strict=True):
            np.testing.assert_array_equal(got, want)
    assert inference_batches(rows, 2) == inference_batches(lists, 2)
    assert rows.nbytes == 4 * 15 + 8 * 6


def test_test_scores_are_the_same_scored_a_chunk_at_a_time(
    split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test split is encoded and scored TEST_CHUNK texts at a time (a run never holds all its ids)."""
    import json

    from click.testing import CliRunner

    from grutext import sources
    from grutext.cli import cli
    from tests.conftest import TINY

    monkeypatch.setattr(sources, "TEST_CHUNK", 7)  # 60 test texts: 9 chunks, the last of 4
    sizes: list[int] = []
    real = sources.encode_inputs

    def spy(tokenizer, texts, *args):  # type: ignore[no-untyped-def]
        sizes.append(len(texts))
        return real(tokenizer, texts, *args)

    monkeypatch.setattr(sources, "encode_inputs", spy)
    result = CliRunner().invoke(cli, ["train", str(split_dir), "-o", str(tmp_path / "m"), *TINY])
    assert result.exit_code == 0, result.output
    assert sizes == [240, 40, *[7] * 8, 4]  # train, validation, then test a chunk at a time
    stored = json.loads((tmp_path / "m" / "metrics.json").read_text())["test"]
    again = json.loads(
        CliRunner().invoke(cli, ["evaluate", "-m", str(tmp_path / "m"), str(split_dir), "--json"]).stdout
    )
    assert stored["n"] == 60 and stored["accuracy"] == again["accuracy"] and stored["macro_f1"] == again["macro_f1"]
