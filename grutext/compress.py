"""Compressed checkpoints (`grutext compress`): the word and n-gram tables product-quantized, the n-gram
table's least useful rows pruned if asked, the other matrices in int8. After Joulin et al. (2016),
"FastText.zip".

The bigram head is linear, so its table is first folded into its classifier (`fold_bigram_head`): a row
becomes the logits it adds (less one, under a softmax), not bigram_dim numbers, with no change in what the
model computes. A table [rows, dim] is then cut into dim / dsub sub-vectors of `dsub` numbers; each
sub-space gets 256 centroids (k-means), and a row is stored as one byte per sub-vector, dim * 4 / dsub times
smaller. Pruning (fastText's `-cutoff`) keeps the n-gram rows with the largest norms, the logits they add,
and a bitmap of which they are; a pruned row reads as zeros. The word table is never pruned: a zeroed word
still passes through the GRU, where a missing n-gram adds nothing. The other matrices (the GRU's, the
classifiers') are stored in int8 with a float32 scale a row, or (`dense="float16"`) in float16; both gave
the same validation accuracy on four sets (bench/compression.py). Biases stay float32.

The stored tensors sit in model.safetensors beside a "compression" section in config.json that says how each
was made. Both engines rebuild the float32 weights when they load: the torch engine in `decompress`, the ONNX
graph with nodes onnxruntime folds into constants at load (grutext.onnx_export). The file is small; the model
in memory, and its speed, are those of the uncompressed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from grutext.errors import CheckpointError, ConfigError

NGRAMS = "bigram_table.weight"
TABLES = ("embedding.weight", NGRAMS)  # the tables a text reads a few rows of
CENTROIDS = 256  # one byte a code
PQ, FLOAT16, INT8 = "pq", "float16", "int8"
DENSE = (INT8, FLOAT16)  # how matrices other than the tables may be stored
CODES, CENTRES, KEPT = ".codes", ".centroids", ".kept"  # suffixes of a quantized table's stored tensors
QUANTIZED, SCALE = ".int8", ".scale"  # an int8 matrix's stored tensors: the values, and a scale for each row

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Settings:
    """How to compress: sub-vector size of the tables' codes, the fraction of each table's rows kept (by
    norm), how the other matrices are stored, k-means iterations and seed."""

    dsub: int = 2
    keep: float = 1.0
    dense: str = INT8
    iterations: int = 20
    seed: int = 0

    def check(self) -> None:
        if not 1 <= self.dsub <= 64:
            raise ConfigError(f"--dsub must be from 1 to 64, got {self.dsub}")
        if not 0.0 < self.keep <= 1.0:
            raise ConfigError(f"--keep-rows must be above 0 and at most 1, got {self.keep}")
        if self.dense not in DENSE:
            raise ConfigError(f"--dense must be one of {', '.join(DENSE)}, got {self.dense!r}")
        if not 1 <= self.iterations <= 1000:
            raise ConfigError(f"k-means iterations must be from 1 to 1000, got {self.iterations}")


def sub_size(dim: int, dsub: int) -> int:
    """The largest sub-vector size at most `dsub` that divides `dim` (an odd width falls back to 1)."""
    return max(d for d in range(1, min(dsub, dim) + 1) if dim % d == 0)


def compress(
    state: Mapping[str, Array], settings: Settings, softmax: bool = False
) -> tuple[dict[str, Array], dict[str, Any]]:
    """The stored tensors of a float32 state dict, and the spec (config.json's "compression" section);
    `softmax` for a single-label model (see fold_bigram_head)."""
    settings.check()
    stored: dict[str, Array] = {}
    tensors: dict[str, dict[str, Any]] = {}
    rng = np.random.default_rng(settings.seed)
    state, folded = fold_bigram_head(state, softmax)
    for key, value in state.items():
        value = np.asarray(value, dtype=np.float32)
        if key in TABLES:
            rows, dim = value.shape
            dsub = sub_size(dim, settings.dsub)
            kept = _kept_rows(value, settings.keep) if key == NGRAMS else None  # zeroed words hurt the GRU
            codes, centroids = quantize(value[kept] if kept is not None else value, dsub, settings.iterations, rng)
            stored[key + CODES], stored[key + CENTRES] = codes, centroids.astype(np.float16)
            entry: dict[str, Any] = {"kind": PQ, "rows": rows, "dim": dim, "dsub": dsub, "kept": rows}
            if kept is not None:
                stored[key + KEPT] = np.packbits(kept, bitorder="little")
                entry["kept"] = int(kept.sum())
            tensors[key] = entry
        elif value.ndim == 2 and settings.dense == INT8:
            stored[key + QUANTIZED], stored[key + SCALE] = to_int8(value)
            tensors[key] = {"kind": INT8}
        elif value.ndim >= 2:
            stored[key] = value.astype(np.float16)
            tensors[key] = {"kind": FLOAT16}
        else:
            stored[key] = value
    spec = {"tensors": tensors, "dsub": settings.dsub, "keep_rows": settings.keep, "dense": settings.dense}
    if folded:
        spec["folded_bigram_dim"] = folded
    return stored, spec


def fold_bigram_head(state: Mapping[str, Array], softmax: bool = False) -> tuple[dict[str, Array], int]:
    """The bigram head is linear: its logits are C · mean(rows) + b = mean(C · row) + b. With fewer labels
    than the table is wide, each row is stored as its C · row (the head then reads an identity), exactly the
    same logits from a table num_labels wide (for sst2, 2 numbers a row, not 32).

    Under a softmax (`softmax`: a single-label model) adding one number to every logit of a text changes
    nothing, so the last label's column is subtracted from each row and dropped: one number a row fewer (one
    in all for two labels), the head reading [I; 0]. Returns the state and the width the table had (0 when
    nothing was folded)."""
    out = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
    if "bigram_table.weight" not in out or "bigram_classifier.weight" not in out:
        return out, 0
    table, head = out["bigram_table.weight"], out["bigram_classifier.weight"]
    labels, dim = head.shape
    width = labels - 1 if softmax and labels > 1 else labels
    if width >= dim:
        return out, 0
    folded = table @ head.T
    if width < labels:
        folded = folded[:, :width] - folded[:, width:]
    out["bigram_table.weight"] = np.ascontiguousarray(folded)
    out["bigram_classifier.weight"] = np.eye(labels, width, dtype=np.float32)
    return out, dim


def to_int8(matrix: Array) -> tuple[Array, Array]:
    """Symmetric int8 with one float32 scale a row (the row's largest magnitude maps to 127)."""
    scale = np.abs(matrix).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    values = np.clip(np.rint(matrix / scale[:, None]), -127, 127).astype(np.int8)
    return values, scale.astype(np.float32)


def _kept_rows(table: Array, keep: float) -> npt.NDArray[np.bool_] | None:
    """The rows with the largest norms, `keep` of them (at least one); None keeps all."""
    rows = table.shape[0]
    count = max(1, round(keep * rows))
    if count >= rows:
        return None
    order = np.argsort(-np.linalg.norm(table, axis=1), kind="stable")
    mask = np.zeros(rows, dtype=bool)
    mask[order[:count]] = True
    return mask


def quantize(table: Array, dsub: int, iterations: int, rng: np.random.Generator) -> tuple[Array, Array]:
    """Product quantization: codes [rows, dim / dsub] (uint8) and centroids [dim / dsub, 256, dsub]."""
    rows, dim = table.shape
    spaces = dim // dsub
    codes = np.zeros((rows, spaces), dtype=np.uint8)
    centroids = np.zeros((spaces, CENTROIDS, dsub), dtype=np.float32)
    for m in range(spaces):
        codes[:, m], centroids[m] = kmeans(table[:, m * dsub : (m + 1) * dsub], iterations, rng)
    return codes, centroids


def kmeans(points: Array, iterations: int, rng: np.random.Generator) -> tuple[Array, Array]:
    """Lloyd's k-means with 256 centres started at distinct points (fewer points than centres: each is one)."""
    centres = np.zeros((CENTROIDS, points.shape[1]), dtype=np.float32)
    distinct = np.unique(points, axis=0)
    if len(distinct) <= CENTROIDS:
        centres[: len(distinct)] = distinct
        return _nearest(points, centres[: len(distinct)]), centres
    centres[:] = distinct[rng.choice(len(distinct), CENTROIDS, replace=False)]
    assign = _nearest(points, centres)
    for _ in range(iterations):
        sizes = np.bincount(assign, minlength=CENTROIDS)
        sums = np.stack([np.bincount(assign, points[:, d], minlength=CENTROIDS) for d in range(points.shape[1])], 1)
        used = sizes > 0
        centres[used] = (sums[used] / sizes[used, None]).astype(np.float32)
        new = _nearest(points, centres)
        if np.array_equal(new, assign):
            break
        assign = new
    return assign.astype(np.uint8), centres


def _nearest(points: Array, centres: Array) -> Array:
    scores = points @ (centres.T * -2.0)  # |x - c|^2 less |x|^2, which is the same for every centre
    scores += (centres * centres).sum(axis=1)
    return np.asarray(scores.argmin(axis=1))


def decompress(stored: Mapping[str, Array], spec: Mapping[str, Any]) -> dict[str, Array]:
    """The float32 state dict a compressed checkpoint's tensors stand for."""
    out: dict[str, Array] = {}
    tensors = spec["tensors"]
    for key, value in stored.items():
        base = _base(key, tensors)
        if base is None:
            out[key] = np.asarray(value, dtype=np.float32)
        elif base not in out and tensors[base]["kind"] == PQ:
            out[base] = dequantize(stored, base, tensors[base])
        elif tensors[base]["kind"] == FLOAT16:
            out[base] = np.asarray(value, dtype=np.float32)
        elif base not in out and tensors[base]["kind"] == INT8:
            out[base] = stored[base + QUANTIZED].astype(np.float32) * stored[base + SCALE][:, None]
    return out


def _base(key: str, tensors: Mapping[str, Any]) -> str | None:
    """The weight a stored tensor belongs to, when it is compressed."""
    if key in tensors:
        return key
    for suffix in (CODES, CENTRES, KEPT, QUANTIZED, SCALE):
        if key.endswith(suffix) and key[: -len(suffix)] in tensors:
            return key[: -len(suffix)]
    return None


def dequantize(stored: Mapping[str, Array], key: str, entry: Mapping[str, Any]) -> Array:
    """A product-quantized table back as float32 [rows, dim], pruned rows zero."""
    codes, centroids = stored[key + CODES], np.asarray(stored[key + CENTRES], dtype=np.float32)
    spaces = codes.shape[1]
    flat = centroids.reshape(spaces * CENTROIDS, -1)
    dense: Array = flat[codes.astype(np.int64) + np.arange(spaces) * CENTROIDS].reshape(len(codes), entry["dim"])
    if key + KEPT not in stored:
        return dense
    mask = np.unpackbits(stored[key + KEPT], bitorder="little")[: entry["rows"]].astype(bool)
    table = np.zeros((entry["rows"], entry["dim"]), dtype=np.float32)
    table[mask] = dense
    return table


def stored_shapes(shapes: Mapping[str, tuple[int, ...]], spec: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shapes model.safetensors holds, from the model's parameter shapes and the spec."""
    out: dict[str, tuple[int, ...]] = {}
    for key, shape in shapes.items():
        entry = spec["tensors"].get(key)
        if entry is None or entry["kind"] == FLOAT16:
            out[key] = shape
            continue
        if entry["kind"] == INT8:
            out[key + QUANTIZED], out[key + SCALE] = shape, shape[:1]
            continue
        spaces = entry["dim"] // entry["dsub"]
        out[key + CODES] = (entry["kept"], spaces)
        out[key + CENTRES] = (spaces, CENTROIDS, entry["dsub"])
        if entry["kept"] < entry["rows"]:
            out[key + KEPT] = ((entry["rows"] + 7) // 8,)
    return out


def check_spec(spec: Any, shapes: Mapping[str, tuple[int, ...]], where: str) -> dict[str, Any]:
    """config.json's "compression" section, checked against the model's parameter shapes."""
    problem = _problem(spec, shapes)
    if problem:
        raise CheckpointError(f"{where}: the compression section is invalid ({problem}); the checkpoint is damaged")
    return dict(spec)


def _problem(spec: Any, shapes: Mapping[str, tuple[int, ...]]) -> str:
    if not isinstance(spec, dict) or not isinstance(spec.get("tensors"), dict):
        return "expected an object with a 'tensors' object"
    for key, entry in spec["tensors"].items():
        if not isinstance(entry, dict) or entry.get("kind") not in (PQ, *DENSE):
            return f"{key}: expected an object with kind {PQ!r}, {INT8!r} or {FLOAT16!r}"
        if entry["kind"] in DENSE:
            continue  # the weights file's shapes are checked against the model's when it is read
        if key not in shapes:
            return f"{key} is not a table of this model"
        values = [entry.get(k) for k in ("rows", "dim", "dsub", "kept")]
        numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0]
        if len(numbers) != 4:
            return f"{key}: rows, dim, dsub and kept must be positive integers"
        rows, dim, dsub, kept = numbers
        if (rows, dim) != shapes[key] or dim % dsub or kept > rows:
            return f"{key}: {rows} x {dim} in sub-vectors of {dsub}, {kept} rows kept, does not fit {shapes[key]}"
    return ""
