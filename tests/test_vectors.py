"""read_vectors: every format plain and gzipped, detection by content, the awkward words, the scale, and a clean
DataError/ConfigError (what, where, how to fix) for each kind of bad file."""

from __future__ import annotations

import gzip
import hashlib
import random
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import grutext.vectors as vectors_module
from grutext.errors import ConfigError, DataError
from grutext.vectors import VectorFile, read_vectors

DIM = 4
# Awkward words on purpose: U+3000 ends one (str.split() would eat it), U+0085 and U+2028 are line breaks to
# str.splitlines(), and "nan"/"1" look like numbers.
WORDS = ["the", ",", "日\u3000", "月", "naïve", "a\u0085b", "x\u2028y", "nan", "1", "</s>"]
RNG = np.random.default_rng(0)
VALUES = RNG.standard_normal((len(WORDS), DIM)).astype(np.float32)


def every(_: str) -> bool:
    return True


def text_rows(words: list[str], values: np.ndarray, trailing: str = "", newline: str = "\n") -> bytes:
    """One `word v1 ... vD` line per row; %.9g round-trips float32 exactly."""
    lines = [
        " ".join([w, *(f"{float(v):.9g}" for v in row)]) + trailing + newline
        for w, row in zip(words, values, strict=True)
    ]
    return "".join(lines).encode("utf-8")


def glove_bytes(words: list[str] = WORDS, values: np.ndarray = VALUES, **kwargs: str) -> bytes:
    return text_rows(words, values, **kwargs)


def word2vec_text_bytes(words: list[str] = WORDS, values: np.ndarray = VALUES, **kwargs: str) -> bytes:
    return f"{len(words)} {values.shape[1]}\n".encode() + text_rows(words, values, **kwargs)


def binary_bytes(words: list[str] = WORDS, values: np.ndarray = VALUES, newline: bool = True) -> bytes:
    """word2vec's C tool ends each row with a newline; gensim writes none."""
    out = [f"{len(words)} {values.shape[1]}\n".encode()]
    for word, row in zip(words, values, strict=True):
        out.append(word.encode("utf-8") + b" " + row.astype("<f4").tobytes() + (b"\n" if newline else b""))
    return b"".join(out)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def check_all_rows(result: VectorFile, words: list[str] = WORDS, values: np.ndarray = VALUES) -> None:
    assert list(result.vectors) == words
    for word, row in zip(words, values, strict=True):
        got = result.vectors[word]
        assert got.dtype == np.float32 and got.shape == (values.shape[1],)
        np.testing.assert_array_equal(got, row)
    assert result.rows_read == len(words)
    assert result.dim == values.shape[1]


# --------------------------------------------------------------------------------------------------
# Formats


FORMATS: list[tuple[str, Callable[[], bytes], str]] = [
    ("glove.txt", glove_bytes, "glove"),
    ("w2v.txt", word2vec_text_bytes, "word2vec"),
    ("cc.xx.300.vec", lambda: word2vec_text_bytes(trailing=" "), "word2vec"),  # fastText ends rows with a space
    ("w2v.bin", binary_bytes, "word2vec-binary"),
    ("gensim.bin", lambda: binary_bytes(newline=False), "word2vec-binary"),
]


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(("name", "make", "fmt"), FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_plain_and_gzipped(
    tmp_path: Path, name: str, make: Callable[[], bytes], fmt: str, compressed: bool
) -> None:
    data = make()
    stored = gzip.compress(data) if compressed else data
    path = write(tmp_path, name + (".gz" if compressed else ""), stored)
    result = read_vectors(path, every)
    assert result.format == fmt
    assert result.compressed is compressed
    assert result.path == path
    assert result.sha256 == hashlib.sha256(stored).hexdigest()
    assert result.seconds >= 0
    check_all_rows(result)


def test_text_and_binary_agree(tmp_path: Path) -> None:
    text = read_vectors(write(tmp_path, "a.txt", word2vec_text_bytes()), every)
    binary = read_vectors(write(tmp_path, "a.bin", binary_bytes()), every)
    assert list(text.vectors) == list(binary.vectors)
    for word in text.vectors:
        np.testing.assert_array_equal(text.vectors[word], binary.vectors[word])
    assert (text.mean, text.std) == pytest.approx((binary.mean, binary.std))


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    hidden = read_vectors(write(tmp_path, "vectors.txt", gzip.compress(glove_bytes())), every)
    assert hidden.compressed and hidden.format == "glove"
    check_all_rows(hidden)
    plain = read_vectors(write(tmp_path, "vectors.txt.gz", glove_bytes()), every)
    assert not plain.compressed and plain.format == "glove"
    check_all_rows(plain)
    binary = read_vectors(write(tmp_path, "vectors.txt", binary_bytes()), every)
    assert binary.format == "word2vec-binary"


def test_multi_member_gzip(tmp_path: Path) -> None:
    data = glove_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    path = write(tmp_path, "v.gz", gzip.compress(data[:half]) + gzip.compress(data[half:]))
    check_all_rows(read_vectors(path, every))


def test_crlf_bom_trailing_spaces_and_blank_lines(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + glove_bytes(trailing="  ", newline="\r\n") + b"\r\n\n"
    check_all_rows(read_vectors(write(tmp_path, "win.txt", data), every))
    header = word2vec_text_bytes(trailing=" ", newline="\r\n").replace(b"\n", b" \r\n", 1)
    check_all_rows(read_vectors(write(tmp_path, "win.vec", header), every))


def test_block_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny reads put block edges inside words, values, line ends and gzip members."""
    monkeypatch.setattr(vectors_module, "_READ_SIZE", 7)
    monkeypatch.setattr(vectors_module, "_HEAD_SIZE", 16)
    monkeypatch.setattr(vectors_module, "_INFLATE_LIMIT", 5)
    monkeypatch.setattr(vectors_module, "_BINARY_BATCH", 3)
    for name, make, fmt in FORMATS:
        for compressed in (False, True):
            data = make()
            path = write(tmp_path, name, gzip.compress(data) if compressed else data)
            result = read_vectors(path, every)
            assert result.format == fmt
            assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
            check_all_rows(result)


def test_larger_than_one_block(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(6000)]
    values = RNG.standard_normal((len(words), 50)).astype(np.float32)  # ~3 MB of text: several 1 MiB blocks
    for name, data in [
        ("big.txt.gz", gzip.compress(glove_bytes(words, values), compresslevel=1)),
        ("big.bin", binary_bytes(words, values)),
    ]:
        result = read_vectors(write(tmp_path, name, data), every)
        check_all_rows(result, words, values)


# --------------------------------------------------------------------------------------------------
# Words


def test_ideographic_space_word_keeps_its_values(tmp_path: Path) -> None:
    """The real Chinese file holds `日\\u3000`: split on ' ' only, or that row has one value too many."""
    for data in (word2vec_text_bytes(), binary_bytes()):
        result = read_vectors(write(tmp_path, "zh", data), lambda w: w.startswith("日"))
        assert list(result.vectors) == ["日\u3000"]
        np.testing.assert_array_equal(result.vectors["日\u3000"], VALUES[WORDS.index("日\u3000")])


def test_keep_filters_and_sees_every_word(tmp_path: Path) -> None:
    asked: list[str] = []

    def keep(word: str) -> bool:
        asked.append(word)
        return word in {"the", "月", "nan", "absent"}

    for data in (glove_bytes(), binary_bytes()):
        asked.clear()
        result = read_vectors(write(tmp_path, "v", data), keep)
        assert asked == WORDS
        assert list(result.vectors) == ["the", "月", "nan"]
        assert result.rows_read == len(WORDS)
        np.testing.assert_array_equal(result.vectors["nan"], VALUES[WORDS.index("nan")])


def test_kept_rows_do_not_pin_whole_blocks(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(3000)]
    values = RNG.standard_normal((len(words), 8)).astype(np.float32)
    for data in (glove_bytes(words, values), binary_bytes(words, values)):
        result = read_vectors(write(tmp_path, "v", data), lambda w: w in {"w5", "w2999"})
        held = {id(a.base): a.base.nbytes for a in result.vectors.values() if a.base is not None}
        assert sum(held.values()) <= 2 * 8 * 4


def test_duplicate_words_keep_the_first(tmp_path: Path) -> None:
    words = ["a", "b", "a", "c", "b"]
    values = np.arange(len(words) * 3, dtype=np.float32).reshape(len(words), 3)
    for data in (glove_bytes(words, values), word2vec_text_bytes(words, values), binary_bytes(words, values)):
        result = read_vectors(write(tmp_path, "dup", data), every)
        assert list(result.vectors) == ["a", "b", "c"]
        np.testing.assert_array_equal(result.vectors["a"], values[0])
        np.testing.assert_array_equal(result.vectors["b"], values[1])
        assert result.rows_read == 5


def test_word_with_spaces_as_in_glove_840b(tmp_path: Path) -> None:
    data = b"the 1 2\n. . . 3 4\nat name@domain.com 5 6\n"
    result = read_vectors(write(tmp_path, "840b.txt", data), every)
    assert list(result.vectors) == ["the", ". . .", "at name@domain.com"]
    np.testing.assert_array_equal(result.vectors[". . ."], [3, 4])
    assert result.dim == 2


# --------------------------------------------------------------------------------------------------
# Scale


def test_mean_std_cover_every_row_not_only_kept_ones(tmp_path: Path) -> None:
    values = VALUES.copy()
    values[-3:] *= 40  # rows nobody keeps still count
    for data in (glove_bytes(values=values), binary_bytes(values=values)):
        result = read_vectors(write(tmp_path, "v", data), lambda w: w == "the")
        assert list(result.vectors) == ["the"]
        assert result.mean == pytest.approx(float(values.astype(np.float64).mean()), rel=1e-6)
        assert result.std == pytest.approx(float(values.astype(np.float64).std()), rel=1e-6)


def test_sampled_scale_covers_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past SCALE_EXACT_VALUES the text reader samples thinner and thinner but weights each sample by its stride,
    so the rows at the end of a frequency-ordered file count as much as the first ones."""
    monkeypatch.setattr(vectors_module, "SCALE_EXACT_VALUES", 2000)  # 500 rows of 4 values, then sampling
    words = [f"w{i}" for i in range(20_000)]
    values = RNG.normal(0.0, 0.01, (len(words), DIM)).astype(np.float32)  # the first rows: small values
    values[1000:10_000] += 1.0
    values[10_000:] -= 2.0
    exact = values.astype(np.float64)
    path = write(tmp_path, "v.txt", glove_bytes(words, values))
    sampled = read_vectors(path, lambda w: w == "w3")
    assert sampled.rows_read == len(words)
    assert sampled.mean == pytest.approx(exact.mean(), rel=0.03)  # -0.55
    assert sampled.std == pytest.approx(exact.std(), rel=0.03)  # 1.4
    assert abs(exact[:2000].mean() - exact.mean()) > 0.5  # the first rows alone would be far off
    every_row = read_vectors(path, every)  # all rows parsed anyway: exact
    assert every_row.mean == pytest.approx(exact.mean(), rel=1e-6)
    assert every_row.std == pytest.approx(exact.std(), rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Settings


def test_expected_dim_mismatch_is_a_config_error(tmp_path: Path) -> None:
    for data in (glove_bytes(), word2vec_text_bytes(), binary_bytes()):
        path = write(tmp_path, "v", data)
        with pytest.raises(ConfigError) as info:
            read_vectors(path, every, expected_dim=300)
        message = str(info.value)
        assert "4-dimensional" in message and "300" in message
        assert "drop --embed-dim" in message and "--embed-dim 4" in message
        assert read_vectors(path, every, expected_dim=DIM).dim == DIM


def test_expected_dim_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be positive"):
        read_vectors(write(tmp_path, "v", glove_bytes()), every, expected_dim=0)


# --------------------------------------------------------------------------------------------------
# Bad files: one DataError each, saying what, where and how to fix


def safetensors_bytes() -> bytes:
    header = b'{"weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    return struct.pack("<Q", len(header)) + header + b"\x00" * 8


def corrupt_gzip() -> bytes:
    data = bytearray(gzip.compress(glove_bytes() * 20))
    for i in range(20, len(data) - 20, 7):
        data[i] ^= 0x5A
    return bytes(data)


BINARY = binary_bytes()
BINARY_FIRST_ROW = BINARY.index(b"\n") + 1

BAD_FILES: list[tuple[str, bytes, list[str]]] = [
    ("empty", b"", ["is empty", "GloVe"]),
    ("empty gzip", gzip.compress(b""), ["holds no vectors", "blank"]),
    ("blank lines", b"\n \n\r\n", ["holds no vectors"]),
    ("csv by mistake", b"text,label\nhello,pos\n", ["line 1", "'text,label' has no values", "word2vec"]),
    ("prose by mistake", b"hello world\nhow are you\n", ["line 1", "value 1 ('world') is not a number", "GloVe"]),
    ("ragged short", b"a 1 2 3\nb 4 5 6\nc 7 8\n", ["line 3", "2 values, but the first row has 3", "fix or delete"]),
    ("ragged long", b"a 1 2\nb 3 4\nc 5 6 7\n", ["line 3", "3 values, but the first row has 2"]),
    (
        "ragged vs header",
        b"3 4\na 1 2 3 4\nb 1 2 3\nc 1 2 3 4\n",
        ["line 3", "3 values, but the header (line 1) says 4"],
    ),
    ("first row typo", b"2 3\na 1 2 x3\nb 1 2 3\n", ["line 2", "value 3 ('x3') is not a number"]),
    ("first row ragged", b"2 3\na 1 2\nb 1 2 3\n", ["line 2", "2 values, but the header (line 1) says 3"]),
    ("no values", b"a 1 2\nlonely\n", ["line 2", "'lonely' has no values"]),
    ("not a number", b"a 1 2\nb 3 x4\n", ["line 2", "value 2 ('x4') is not a number", "fix or delete"]),
    ("two spaces", b"a 1 2\nb  3\n", ["line 2", "two spaces in a row"]),
    ("nan", b"a 1 2\nb nan 2\n", ["line 2", "value 1 is nan", "not a finite number"]),
    ("inf", b"2 2\na 1 2\nb 1 -inf\n", ["line 3", "value 2 is -inf"]),
    ("overflow", b"a 1 2\nb 1e39 2\n", ["line 2", "value 1 is inf"]),
    ("latin-1 word", "a 1 2\ncafé 3 4\n".encode("latin-1"), ["line 2", "not valid UTF-8", "iconv"]),
    ("header without rows", b"3 4\n", ["holds no vectors"]),
    ("header of zero", b"0 300\n", ["line 1", "0 rows of 300 values"]),
    ("header counts too many", b"5 2\na 1 2\nb 3 4\n", ["announces 5 rows but the file holds 2", "truncated"]),
    ("header counts too few", b"1 2\na 1 2\nb 3 4\n", ["line 3", "more rows than the 1", "fix the count in line 1"]),
    ("text cut mid-row", b"a 1.5 2.5 3.5\nb 1.5 2", ["line 2", "ends inside this row (2 of 3 values)", "truncated"]),
    ("random bytes", random.Random(0).randbytes(5000), ["does not look like a word-vector file", "word2vec"]),
    ("zip", b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 40, ["zip archive", "unzip"]),
    ("safetensors", safetensors_bytes(), ["safetensors"]),
    ("fasttext bin", struct.pack("<ii", 793712314, 12) + b"\x00" * 64, ["fastText model", ".vec"]),
    ("bzip2", b"BZh91AY&SY" + b"\x00" * 40, ["bzip2"]),
    ("truncated gzip", gzip.compress(glove_bytes())[:-30], ["gzip data ends early", "truncated"]),
    ("corrupt gzip", corrupt_gzip(), ["gzip data is corrupt", "download"]),
    ("garbage after gzip", gzip.compress(glove_bytes()) + b"junk at the end", ["not gzip follows"]),
    ("binary truncated", BINARY[:-7], ["row 10", "truncated"]),
    ("binary rows missing", BINARY.replace(b"10 4\n", b"12 4\n", 1), ["announces 12 rows", "truncated"]),
    ("binary header dim too big", BINARY.replace(b"10 4\n", b"10 5\n", 1), ["row 2", "dimension (5)"]),
    ("binary header dim too small", BINARY.replace(b"10 4\n", b"10 3\n", 1), ["row 2", "dimension (3)"]),
    ("binary extra rows", BINARY.replace(b"10 4\n", b"8 4\n", 1), ["data after the 8 rows", "count in the header"]),
    (
        "binary nan",
        BINARY[:BINARY_FIRST_ROW]
        + b"the "
        + struct.pack("<4f", 1, float("nan"), 3, 4)
        + BINARY[BINARY_FIRST_ROW + 21 :],
        ["row 1 ('the')", "value 2 is nan"],
    ),
]


@pytest.mark.parametrize(("name", "data", "fragments"), BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_file_is_one_clean_data_error(tmp_path: Path, name: str, data: bytes, fragments: list[str]) -> None:
    path = write(tmp_path, "vectors.txt", data)
    with pytest.raises(DataError) as info:
        read_vectors(path, every)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_binary_word_with_latin1_byte(tmp_path: Path) -> None:
    data = binary_bytes(["ok", "caf\xe9"], VALUES[:2]).replace("caf\xe9".encode(), b"caf\xe9", 1)
    with pytest.raises(DataError, match=r"row 2 \(byte \d+\): the word b'caf\\xe9' is not valid UTF-8.*not UTF-8"):
        read_vectors(write(tmp_path, "v.bin", data), every)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file: .*nope\.vec; check the path"):
        read_vectors(tmp_path / "nope.vec", every)
    with pytest.raises(DataError, match="is a directory; pass the vectors file itself"):
        read_vectors(tmp_path, every)


@pytest.mark.parametrize("make", [glove_bytes, word2vec_text_bytes, binary_bytes], ids=["glove", "w2v", "bin"])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_cut_or_flipped_files_end_in_data_error_or_a_result(
    tmp_path: Path, make: Callable[[], bytes], compressed: bool
) -> None:
    """No ValueError, UnicodeDecodeError, struct.error, EOFError, zlib.error or OSError escapes."""
    good = gzip.compress(make()) if compressed else make()
    rng = random.Random(7)
    variants = [good[:cut] for cut in range(1, len(good), 3)]
    for _ in range(60):
        flipped = bytearray(good)
        flipped[rng.randrange(len(good))] ^= 1 << rng.randrange(8)
        variants.append(bytes(flipped))
    path = tmp_path / "v"
    for data in variants:
        path.write_bytes(data)
        try:
            result = read_vectors(path, every)
        except DataError as exc:
            assert str(path) in str(exc)
        else:
            assert result.rows_read >= 1
