"""Read a pretrained word-vector file, keeping only the words a vocabulary asks for.

Formats, told apart by their content (never by the file name):
  - "glove": text, one `word v1 ... vD` row per line, no header (Stanford GloVe).
  - "word2vec": the same rows after a `N D` header line (word2vec -binary 0, gensim, fastText `.vec`).
  - "word2vec-binary": the `N D` header line, then per row the word's UTF-8 bytes, a space and D little-endian
    float32; the newline word2vec's C tool writes after each row is optional (gensim writes none).
Each may be gzipped; gzip is recognised by its magic bytes 1f 8b, so `x.txt` may be gzipped and `x.gz` plain.
After a header, a first row of D numbers means text (4*D raw float bytes never spell that); otherwise the bytes
decide: binary floats hold control bytes and invalid UTF-8, text (even damaged text) does not.

The file is streamed in 1 MiB blocks: memory holds one block, the kept rows and nothing else, so a 2M x 300
fastText file with a 30k-word vocabulary costs about 30k x 300 floats. Text rows are split on the single space
the formats use, never on any whitespace, so a word that ends in U+3000 (ideographic space, as in the Chinese
word2vec vectors) stays one word; trailing spaces and CRLF line ends are tolerated. A row whose word holds
spaces (glove.840B has `. . .`) is read as that word when the extra leading fields are not numbers; otherwise a
row with more or fewer values than the others is an error.

Speed: numbers are parsed only for kept rows and for the rows sampled for the scale, one numpy call per
block. Rows that are neither are split off and counted but their values are not read, so a damaged value in a
row nobody uses goes unnoticed; it could not affect the result.

Scale (`mean`, `std`, used to initialise the tokens the file lacks): exact over every row whenever every row
is parsed (binary files; text files whose rows are all kept or are fewer than about 1M values); otherwise an
estimate from a deterministic sample that covers the whole file: every row of the first 1M values, then every
2nd row of the next stretch as long, every 4th of the next twice as long, and so on, each sampled row weighted
by its stride (on the 400k GloVe and the Chinese word2vec vectors: std within 0.2%, mean within 0.001).

Words must be UTF-8. A word that is not is an error naming its line (or binary row), not silently replaced:
a replaced word never matches a token, so a Latin-1 file would load with its non-ASCII words quietly lost.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from grutext.errors import ConfigError, DataError, UsageError
from grutext.readers import unreadable

FORMATS = ("glove", "word2vec", "word2vec-binary")
FORMAT_HINT = (
    "expected GloVe text (`word v1 ... vD` per line), word2vec or fastText .vec text (a `N D` header line, "
    "then such rows) or word2vec binary, each optionally gzipped"
)
SCALE_EXACT_VALUES = 1_000_000  # text rows parsed for the scale before sampling thins out (see the docstring)

_READ_SIZE = 1 << 20  # bytes read from disk at a time
_INFLATE_LIMIT = 1 << 22  # most bytes inflated per step, so a gzip bomb cannot fill memory in one go
_HEAD_SIZE = 1 << 16  # decompressed bytes looked at to tell the format
_MAX_LINE = 1 << 24  # a longer text line means this is not a vector file
_MAX_WORD = 1 << 16  # a longer binary "word" means the dimension is wrong or the file is damaged
_BINARY_BATCH = 4096  # binary rows checked and summed together
_MAX_DIM = 1 << 16  # more values per row means a damaged header or not a vector file
_BOM = b"\xef\xbb\xbf"
_HEADER = re.compile(rb"[ \t]*(\d+)[ \t]+(\d+)[ \t]*")
_NUMBER = re.compile(rb"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?|[-+]?(nan|inf|infinity)", re.IGNORECASE)
_NOT_TEXT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control bytes no text file holds
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_MAGIC: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb"PK\x03\x04"), "a zip archive; unzip it and pass the .vec or .txt file inside"),
    (
        re.compile(rb"\xba\x16\x4f\x2f"),
        "a fastText model (.bin), not a vector file; pass the matching .vec file (fasttext.cc publishes both)",
    ),
    (re.compile(rb"BZh[1-9]1AY&SY"), "bzip2-compressed; decompress it (bunzip2) or recompress it with gzip"),
    (re.compile(rb"\xfd7zXZ\x00"), "xz-compressed; decompress it (unxz) or recompress it with gzip"),
    (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd-compressed; decompress it (unzstd) or recompress it with gzip"),
    (re.compile(rb"\x93NUMPY"), "a NumPy array (.npy), which holds no words; pass a word-vector file"),
    (
        re.compile(rb"(?s).{4}\x00{4}\{\""),
        "a safetensors file (model weights), not a vector file; pass a word-vector file",
    ),
)

Vector = npt.NDArray[np.float32]


@dataclass
class VectorFile:
    """What was read: the kept vectors, the file's identity (for the checkpoint) and the vectors' own scale."""

    path: Path
    format: str  # one of FORMATS
    compressed: bool  # gzip, detected from the magic bytes
    dim: int
    rows_read: int  # rows in the file (each is split and counted; which have their values parsed: module docstring)
    sha256: str  # of the file's bytes as stored (compressed or not)
    vectors: dict[str, Vector]  # only the rows whose word keep(word) accepted; float32 [dim] each
    mean: float  # mean and std over the values of every row (see the module docstring for when sampled),
    std: float  # used to initialise tokens the file lacks
    seconds: float


def read_vectors(path: str | Path, keep: Callable[[str], bool], expected_dim: int | None = None) -> VectorFile:
    """Stream `path` once and keep the rows whose word `keep` accepts (the first one if a word repeats).

    Raises DataError for a file that is missing or cannot be read as vectors, and ConfigError when the file's
    dimension is not `expected_dim`.
    """
    start = time.perf_counter()
    path = Path(path)
    if expected_dim is not None and expected_dim < 1:
        raise ConfigError(f"the embedding dimension must be positive, got {expected_dim}; pass --embed-dim >= 1")
    origin = str(path)
    with _Source(path) as source:
        head = source.read_head()
        fmt, header, dim, body = _sniff(head, origin)
        if expected_dim is not None and expected_dim != dim:
            raise UsageError(
                f"{origin} holds {dim}-dimensional vectors but the embedding dimension is set to {expected_dim}; "
                f"drop --embed-dim (the file's dimension is used) or pass --embed-dim {dim}"
            )
        if fmt == "word2vec-binary":
            assert header is not None  # the binary form always has one
            rows = _read_binary(source, head, body, header[0], dim, keep, origin)
        else:
            rows = _read_text(source, head, header, dim, keep, origin)
    mean, std = rows.scale.result(rows.count)
    return VectorFile(
        path=path,
        format=fmt,
        compressed=source.compressed,
        dim=dim,
        rows_read=rows.count,
        sha256=source.digest.hexdigest(),
        vectors=rows.vectors,
        mean=mean,
        std=std,
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------------
# The bytes: plain or gzipped, hashed as stored


class _Source:
    """The file's content in blocks, inflated when gzipped; hashes the stored bytes as they are read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self._file = _open(path)
        self._input = self._read_raw()  # stored bytes not yet handed out (or inflated)
        if not self._input:
            self._file.close()
            raise DataError(f"{path} is empty; {FORMAT_HINT}")
        self.compressed = self._input[:2] == b"\x1f\x8b"
        self._inflater: zlib._Decompress | None = None  # the gzip member being inflated, if any

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def _read_raw(self) -> bytes:
        try:
            data = self._file.read(_READ_SIZE)
        except OSError as exc:
            raise DataError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        self.digest.update(data)
        return data

    def read(self) -> bytes:
        """The next block of content; b"" at the end, after the whole file was read and the gzip checked."""
        return self._inflate() if self.compressed else self._plain()

    def read_head(self) -> bytes:
        """At least the first line and _HEAD_SIZE bytes of content (less if the file is shorter)."""
        head = self.read()
        while len(head) < _HEAD_SIZE or (b"\n" not in head and len(head) < _MAX_LINE):
            more = self.read()
            if not more:
                break
            head += more
        if not head.strip():
            raise DataError(f"{self.path} holds no vectors (it is blank after decompression); {FORMAT_HINT}")
        return head

    def _plain(self) -> bytes:
        data, self._input = self._input, b""
        return data or self._read_raw()

    def _inflate(self) -> bytes:
        while True:
            if not self._input:
                self._input = self._read_raw()
                if not self._input:
                    if self._inflater is not None:
                        raise DataError(
                            f"{self.path}: the gzip data ends early: the file is truncated; download or copy it again"
                        )
                    return b""
            if self._inflater is None:  # between members: another member, NUL padding, or garbage
                if not self._input.strip(b"\x00"):
                    self._input = b""
                    continue
                if len(self._input) < 2:
                    self._input += self._read_raw()
                if self._input[:2] != b"\x1f\x8b":
                    raise DataError(
                        f"{self.path}: data that is not gzip follows the compressed content; the file is damaged "
                        "or two files were joined; download it again"
                    )
                self._inflater = zlib.decompressobj(wbits=31)
            try:
                data = self._inflater.decompress(self._input, _INFLATE_LIMIT)
            except zlib.error as exc:
                raise DataError(f"{self.path}: the gzip data is corrupt ({exc}); download or copy it again") from None
            self._input = self._inflater.unconsumed_tail
            if self._inflater.eof:  # end of this member; what follows may be another
                self._input = self._inflater.unused_data + self._input
                self._inflater = None
            if data:
                return data


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        expected = "the vectors file itself (.txt, .vec or .bin, or .gz)"
        raise unreadable(path, exc, expected, "check the path to the vectors file") from None


def _sniff(head: bytes, origin: str) -> tuple[str, tuple[int, int] | None, int, int]:
    """(format, (rows, dim) from the header or None, dim, offset of the first row) from the file's first bytes."""
    for magic, what in _MAGIC:
        if magic.match(head):
            raise DataError(f"{origin} is {what}")
    end = head.find(b"\n")
    first = (head if end < 0 else head[:end]).removeprefix(_BOM).rstrip(b" \r")
    header = _HEADER.fullmatch(first)
    if header:
        rows, dim = int(header[1]), int(header[2])
        if rows == 0 or dim == 0:
            raise DataError(f"{origin}: the header (line 1) announces {rows} rows of {dim} values; no vectors to read")
        if dim > _MAX_DIM:
            raise DataError(
                f"{origin}: the header (line 1) announces {dim} values per row; the header is damaged or this is "
                f"not a vector file ({FORMAT_HINT})"
            )
        body = len(head) if end < 0 else end + 1
        fmt = "word2vec" if _text_row_follows(head, body, dim) else "word2vec-binary"
        return fmt, (rows, dim), dim, body
    if b"\x00" in first or not _is_utf8(first):
        raise DataError(f"{origin} does not look like a word-vector file (line 1 holds binary data); {FORMAT_HINT}")
    for number, line in enumerate(head.split(b"\n"), 1):
        line = line.removeprefix(_BOM).rstrip(b" \r")
        if line:
            word, sep, rest = line.partition(b" ")
            if not sep:
                shown = word[:40].decode(errors="replace")
                raise DataError(f"{origin}, line {number}: {shown!r} has no values; {FORMAT_HINT}")
            dim = rest.count(b" ") + 1
            if dim > _MAX_DIM:
                raise DataError(f"{origin}, line {number}: {dim} values in one row; this is not a vector file")
            return "glove", None, dim, 0
    raise DataError(f"{origin} holds no vectors; {FORMAT_HINT}")  # unreachable: read_head refuses blank files


def _text_row_follows(head: bytes, body: int, dim: int) -> bool:
    """True when the rows after the header are text, not word2vec binary.

    A first row of `dim` numbers is text (4*dim raw float bytes never spell that). Otherwise the first row is
    damaged text or binary; binary floats put control bytes or invalid UTF-8 into any stretch of a few rows.
    """
    while body < len(head) and head[body] in b"\r\n":
        body += 1
    space = head.find(b" ", body)
    if space >= 0:
        end = head.find(b"\n", space)
        fields = head[space + 1 : len(head) if end < 0 else end].rstrip(b" \r").split(b" ")
        if len(fields) == dim and all(_NUMBER.fullmatch(field) for field in fields):
            return True
    rows = head[body:]
    return _NOT_TEXT.search(rows) is None and _is_utf8(rows)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data" and exc.end == len(data)  # cut off by the head's end
    return True


# --------------------------------------------------------------------------------------------------
# The rows


class _Scale:
    """Running sums for the mean and std of the values: exact over parsed rows, and weighted over sampled ones."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows = 0  # rows parsed
        self.total = 0.0
        self.squares = 0.0
        self.weight = 0.0  # rows the sampled rows stand for
        self.w_total = 0.0
        self.w_squares = 0.0

    def add(self, block: Vector, weights: npt.NDArray[np.float64] | None = None) -> None:
        values = block.astype(np.float64)  # [n, dim]: float32 sums lose digits over millions of values
        sums = values.sum(axis=1)
        squares = np.einsum("ij,ij->i", values, values)
        self.rows += len(block)
        self.total += float(sums.sum())
        self.squares += float(squares.sum())
        if weights is not None:
            self.weight += float(weights.sum())
            self.w_total += float(weights @ sums)
            self.w_squares += float(weights @ squares)

    def result(self, rows_read: int) -> tuple[float, float]:
        """(mean, std): exact when every row was parsed, otherwise the sample's estimate."""
        if self.rows == rows_read or self.weight == 0:
            count, total, squares = float(self.rows * self.dim), self.total, self.squares
        else:
            count, total, squares = self.weight * self.dim, self.w_total, self.w_squares
        mean = total / count
        return mean, math.sqrt(max(squares / count - mean * mean, 0.0))


@dataclass
class _Rows:
    vectors: dict[str, Vector]
    scale: _Scale
    count: int


def _read_text(
    source: _Source,
    head: bytes,
    header: tuple[int, int] | None,
    dim: int,
    keep: Callable[[str], bool],
    origin: str,
) -> _Rows:
    """GloVe or word2vec text: split each line's word off, parse the values of kept and sampled rows per block."""
    announced = header[0] if header else None
    dim_source = f"the header (line 1) says {dim}" if header else f"the first row has {dim}"
    vectors: dict[str, Vector] = {}
    scale = _Scale(dim)
    spaces = dim - 1  # spaces between the values of a well-formed row
    exact_rows = max(2, 2 * math.ceil(SCALE_EXACT_VALUES / dim / 2))  # even, so each stage halves evenly
    stride, next_stage, countdown = 1, exact_rows, 0
    count = 0  # rows read
    line_no = first_line = 0
    pending = b""  # the unfinished last line of the previous block
    block = head
    while True:
        at_end = not block
        if at_end:
            lines = [pending] if pending else []
        else:
            lines = (pending + block).split(b"\n")
            pending = lines.pop()
            if len(pending) > _MAX_LINE:
                raise DataError(
                    f"{origin}, line {line_no + len(lines) + 1} is longer than {_MAX_LINE} bytes; "
                    f"this is not a vector file ({FORMAT_HINT})"
                )
        rests: list[bytes] = []  # the values of the rows to parse, as text
        numbers: list[int] = []  # their line numbers
        weights: list[int] = []  # how many rows each stands for in the sampled scale (0: kept, not sampled)
        taken: dict[str, int] = {}  # kept word -> its index in rests
        for line in lines:
            line_no += 1
            if line_no == 1:
                line = line.removeprefix(_BOM)
                if header:
                    continue
            line = line.rstrip(b" \r")
            if not line:
                continue
            word_bytes, sep, rest = line.partition(b" ")
            if not sep or rest.count(b" ") != spaces:
                word_bytes, rest = _odd_row(word_bytes, rest, dim, dim_source, origin, line_no, at_end)
            if count == announced:
                raise DataError(
                    f"{origin}, line {line_no}: more rows than the {announced} the header (line 1) announces; "
                    "fix the count in line 1"
                )
            # Sampling for the scale: all rows of the first stage, then every 2nd, 4th, ... (module docstring).
            if count == next_stage:
                stride, next_stage, countdown = stride * 2, next_stage * 2, 0
            count += 1
            if count == 1:
                first_line = line_no
            weight = 0
            if countdown == 0:
                weight, countdown = stride, stride - 1
            else:
                countdown -= 1
            try:
                word = word_bytes.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(origin, line_no, word_bytes, exc) from None
            take = word not in vectors and word not in taken and keep(word)
            if take or weight:
                if take:
                    taken[word] = len(rests)
                rests.append(rest)
                numbers.append(line_no)
                weights.append(weight)
        if rests:
            values = _parse_values(rests, numbers, dim, origin, first_line)  # [len(rests), dim]
            scale.add(values, np.array(weights, dtype=np.float64))
            if taken:
                kept = values[list(taken.values())]  # a copy: the block's other rows are freed
                vectors.update(zip(taken, kept, strict=True))
        if at_end:
            break
        block = source.read()
    if count == 0:
        raise DataError(f"{origin} holds no vectors; {FORMAT_HINT}")
    if announced is not None and count < announced:
        raise DataError(
            f"{origin}: the header (line 1) announces {announced} rows but the file holds {count}; it looks "
            "truncated (download it again) or the count in line 1 is wrong"
        )
    return _Rows(vectors, scale, count)


def _odd_row(
    word: bytes, rest: bytes, dim: int, dim_source: str, origin: str, line_no: int, last: bool
) -> tuple[bytes, bytes]:
    """A row without exactly `dim` fields after its word: a word that holds spaces, or an error."""
    where = f"{origin}, line {line_no}"
    fix = f"each row needs a word and {dim} values separated by single spaces; fix or delete that line"
    fields = rest.split(b" ") if rest else []
    if len(fields) > dim:
        extra = fields[: len(fields) - dim]
        if all(field and not _is_number(field) for field in extra):  # e.g. glove.840B's ". . ." row
            return b" ".join([word, *extra]), b" ".join(fields[len(extra) :])
    if last and len(fields) < dim:
        raise DataError(
            f"{where}: the file ends inside this row ({len(fields)} of {dim} values); it is truncated; "
            "download or copy it again"
        )
    if not fields:
        shown = word[:40].decode(errors="replace")
        raise DataError(f"{where}: {shown!r} has no values; {fix}")
    raise DataError(f"{where}: {len(fields)} values, but {dim_source}; {fix}")


def _is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _parse_values(rests: list[bytes], numbers: list[int], dim: int, origin: str, first_line: int) -> Vector:
    """[len(rests), dim] float32 from rows of `dim` space-separated numbers; errors name the line.

    A bad value in the file's first row (`first_line`) more likely means this is no vector file at all.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy < 2 warns (not raises) on a bad number
        try:
            flat = np.fromstring(b" ".join(rests), dtype=np.float32, sep=" ")
        except ValueError:
            flat = np.empty(0, dtype=np.float32)
    if flat.size != len(rests) * dim:  # a bad field somewhere: find it, row by row
        parsed: list[float] = []
        for rest, line_no in zip(rests, numbers, strict=True):
            for column, field in enumerate(rest.split(b" "), 1):
                try:
                    parsed.append(float(field))
                except ValueError:
                    shown = field[:40].decode(errors="replace")
                    hint = " (two spaces in a row?)" if not field else ""
                    fix = FORMAT_HINT if line_no == first_line else "fix or delete that line"
                    raise DataError(
                        f"{origin}, line {line_no}: value {column} ({shown!r}){hint} is not a number; {fix}"
                    ) from None
        flat = np.array(parsed, dtype=np.float32)
    values = flat.reshape(len(rests), dim)
    bad = _first_nonfinite(values)
    if bad is not None:
        row, column = bad
        raise DataError(
            f"{origin}, line {numbers[row]}: value {column + 1} is {values[row, column]} (not a finite number); "
            "the vectors are damaged; fix or delete that line"
        )
    return values


def _first_nonfinite(values: Vector) -> tuple[int, int] | None:
    finite = np.isfinite(values)
    if finite.all():
        return None
    row = int(np.flatnonzero(~finite.all(axis=1))[0])
    return row, int(np.flatnonzero(~finite[row])[0])


def _read_binary(
    source: _Source,
    head: bytes,
    body: int,
    announced: int,
    dim: int,
    keep: Callable[[str], bool],
    origin: str,
) -> _Rows:
    """word2vec binary: word, space, `dim` float32, optional newline; every row's values count for the scale."""
    width = 4 * dim
    vectors: dict[str, Vector] = {}
    scale = _Scale(dim)
    buf, pos, base = head, body, 0  # base: content offset of buf[0]
    views: list[Vector] = []  # the current batch's rows, still pointing into the blocks they came from
    words: list[str] = []
    taken: dict[str, int] = {}
    count = 0
    while count < announced:
        while True:
            while pos < len(buf) and buf[pos] == 10:  # the newline that ends the previous row, if written
                pos += 1
            space = buf.find(b" ", pos, pos + _MAX_WORD)
            if space >= 0 and space + 1 + width <= len(buf):
                break
            where = f"{origin}, row {count + 1} (byte {base + pos})"
            if space < 0 and len(buf) - pos >= _MAX_WORD:
                raise DataError(
                    f"{where}: no word (no space in {_MAX_WORD} bytes); the header's dimension ({dim}) may not "
                    "match the rows, or the file is damaged"
                )
            more = source.read()
            if not more:
                raise DataError(
                    f"{where}: the file ends, but the header (line 1) announces {announced} rows of {dim} values; "
                    "it is truncated; download or copy it again"
                )
            base, buf, pos = base + pos, buf[pos:] + more, 0
        word_bytes = buf[pos:space]
        if not word_bytes or _CONTROL.search(word_bytes):
            raise DataError(
                f"{origin}, row {count + 1} (byte {base + pos}): the word is not text; the header's dimension "
                f"({dim}) may not match the rows, or the file is damaged"
            )
        try:
            word = word_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{origin}, row {count + 1} (byte {base + pos}): the word {word_bytes[:40]!r} is not valid UTF-8 "
                f"(byte {exc.start + 1} of the word); the file is not UTF-8, is damaged, or the header's dimension "
                f"({dim}) does not match the rows"
            ) from None
        views.append(np.frombuffer(buf, dtype="<f4", count=dim, offset=space + 1))
        words.append(word)
        if word not in vectors and word not in taken and keep(word):
            taken[word] = len(views) - 1
        pos = space + 1 + width
        count += 1
        if len(views) == _BINARY_BATCH or count == announced:
            values = np.stack(views).astype(np.float32)  # [n, dim], native byte order
            bad = _first_nonfinite(values)
            if bad is not None:
                row, column = bad
                raise DataError(
                    f"{origin}, row {count - len(views) + row + 1} ({words[row]!r}): value {column + 1} is "
                    f"{values[row, column]} (not a finite number); the vectors are damaged"
                )
            scale.add(values)
            if taken:
                vectors.update(zip(taken, values[list(taken.values())], strict=True))
            views, words, taken = [], [], {}
    # After the announced rows only line ends may follow; reading to the end also completes the hash and the
    # gzip check.
    rest, offset = buf[pos:], base + pos
    while True:
        if rest.strip(b"\r\n\t \x00"):
            raise DataError(
                f"{origin}: data after the {announced} rows the header announces (byte {offset}); the count in the "
                "header is wrong or the file is damaged"
            )
        offset += len(rest)
        rest = source.read()
        if not rest:
            return _Rows(vectors, scale, count)


def _not_utf8(origin: str, line_no: int, word: bytes, exc: UnicodeDecodeError) -> DataError:
    return DataError(
        f"{origin}, line {line_no}: the word {word[:40]!r} is not valid UTF-8 (byte {exc.start + 1} of the word); "
        "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8), or fix or delete that line"
    )
