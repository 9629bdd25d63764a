"""A checkpoint as an ONNX graph (`grutext export`): token ids + lengths in, probabilities out.

The graph is written with onnx.helper around ONNX's own recurrent operators, from the weights in
model.safetensors (no torch needed), because torch.onnx.export would unroll the Cho et al. cell's Python
loop for one fixed length. ONNX's GRU computes both GRU forms grutext trains:

  * `--cell gru` (PyTorch's, reset gate after the recurrent matmul) is GRU with linear_before_reset=1, its
    gate blocks reordered from PyTorch's (r, z, n) to ONNX's (z, r, h);
  * `--cell cho2014` (reset gate before the matmul) is GRU with linear_before_reset=0. ONNX's update gate
    weights the old state, z_onnx = 1 - z_cho = σ(-(W_z·[h, x] + b_z)), so the z block is negated;
  * `--cell lstm` is LSTM, gate blocks reordered from (i, f, g, o) to (i, o, f, c).

Inside a checkpoint the graph holds no weights of its own: its initializers are spans of model.safetensors
(ONNX external data), and the reordering above is done by nodes (Split, Concat, Neg, Slice) that
onnxruntime folds into constants when it loads the graph. The weights are stored once. A copy written
elsewhere (`grutext export --output`) holds them inside, so it stands alone.

`sequence_lens` makes each direction stop at its text's length (the reverse direction starts at its last
real token), exactly as grutext's right-padded, reversed-within-length scans do. Pooling masks padded steps
as grutext.model.pool does. tests/test_onnx.py holds the graph's probabilities to the torch model's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from grutext.artifacts import ONNX_FILE, WEIGHTS_FILE, Meta
from grutext.compress import CENTRES, CENTROIDS, CODES, FLOAT16, INT8, KEPT, PQ, QUANTIZED, SCALE
from grutext.config import BIGRAM_HASH, ModelConfig, to_dict
from grutext.errors import CheckpointError

OPSET = 17
Array = npt.NDArray[np.float32]


class _Graph:
    """A small builder: unique names, initializers, nodes; `weight(key)` names a checkpoint tensor (once)."""

    def __init__(self, source: Source) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0
        self.source = source
        self.weights: dict[str, str] = {}

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value: Any, hint: str, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, key: str) -> str:
        """The float32 weight `key` of the model: an initializer, or for a compressed checkpoint the nodes that
        rebuild it from the stored tensors (constants onnxruntime folds at load)."""
        from onnx import TensorProto

        if key not in self.weights:
            entry = self.source.compression.get(key)
            if entry is None:
                self.weights[key] = self.stored(key)
            elif entry["kind"] == FLOAT16:
                self.weights[key] = self.op("Cast", [self.stored(key)], to=TensorProto.FLOAT)
            elif entry["kind"] == INT8:  # a scale a row
                values = self.op("Cast", [self.stored(key + QUANTIZED)], to=TensorProto.FLOAT)
                scale = self.op("Unsqueeze", [self.stored(key + SCALE), self.const([1], "axis1", np.int64)])
                self.weights[key] = self.op("Mul", [values, scale])
            else:
                self.weights[key] = _dequantize(self, key, entry)
        return self.weights[key]

    def stored(self, key: str) -> str:
        """The initializer holding the stored tensor `key`."""
        name = self.name(key.replace(".", "_"))
        self.initializers.append(self.source.initializer(key, name))
        return name

    def op(self, kind: str, inputs: list[str], hint: str | None = None, outputs: int = 1, **attrs: Any) -> Any:
        from onnx import helper

        names = [self.name(hint or kind.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(kind, inputs, names, **attrs))
        return names[0] if outputs == 1 else names


class Source:
    """Where a graph's weights come from: arrays written into the graph (`Source(arrays)`), or spans of a
    safetensors file beside it (`Source.external(path)`), which the graph then reads in place."""

    def __init__(self, arrays: dict[str, npt.NDArray[Any]], compression: dict[str, Any] | None = None) -> None:
        self.arrays = arrays
        self.compression: dict[str, Any] = (compression or {}).get("tensors", {})  # grutext.compress's spec
        self.dtypes = {k: np.dtype(v.dtype) for k, v in arrays.items()}
        self.shapes = {k: tuple(v.shape) for k, v in arrays.items()}
        self.spans: dict[str, tuple[int, int]] = {}  # key -> (offset, length) of its bytes in self.file
        self.file = ""

    @classmethod
    def external(cls, path: Path, compression: dict[str, Any] | None = None) -> Source:
        """The tensors of the safetensors file at `path`, by reference."""
        header, start = read_safetensors_header(path)
        source = cls({}, compression)
        source.file = path.name
        for key, entry in header.items():
            if key != "__metadata__":
                source.dtypes[key] = np.dtype(SAFETENSORS_DTYPES[entry["dtype"]])
                source.shapes[key] = tuple(entry["shape"])
                first, last = entry["data_offsets"]
                source.spans[key] = (start + first, last - first)
        return source

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of the model's weight `key` (a compressed table's as it was)."""
        entry = self.compression.get(key)
        if entry is not None and entry["kind"] == PQ:
            return (entry["rows"], entry["dim"])
        if entry is not None and entry["kind"] == INT8:
            return self.shapes[key + QUANTIZED]
        return self.shapes[key]

    def initializer(self, key: str, name: str) -> Any:
        from onnx import TensorProto, helper, numpy_helper

        if key not in self.spans:
            return numpy_helper.from_array(np.ascontiguousarray(self.arrays[key]), name)
        tensor = TensorProto(
            name=name, dims=self.shapes[key], data_type=helper.np_dtype_to_tensor_dtype(self.dtypes[key])
        )
        tensor.data_location = TensorProto.EXTERNAL
        offset, length = self.spans[key]
        for field, value in (("location", self.file), ("offset", str(offset)), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = field, value
        return tensor


SAFETENSORS_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "I8": np.int8,
    "U8": np.uint8,
    "I32": np.int32,
    "I64": np.int64,
}
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own bound


def read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """A safetensors file's JSON header, and where its data begins (the layout is 8 bytes of header length,
    little-endian, the header, then the tensors' bytes); a malformed file is a CheckpointError."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size <= MAX_HEADER_BYTES:
                raise ValueError(f"header length {size}")
            header = json.loads(fh.read(size))
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        for key, entry in header.items():
            if key != "__metadata__" and entry.get("dtype") not in SAFETENSORS_DTYPES:
                raise ValueError(f"{key} has dtype {entry.get('dtype')}")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}); the checkpoint is damaged") from None
    return header, 8 + size


def _dequantize(g: _Graph, key: str, entry: dict[str, Any]) -> str:
    """grutext.compress.dequantize as nodes: each row's codes pick centroids, and a pruned table's bitmap
    places the kept rows (the others read the zero row in front)."""
    from onnx import TensorProto

    spaces, rows, dim = entry["dim"] // entry["dsub"], entry["rows"], entry["dim"]
    centroids = g.op("Cast", [g.stored(key + CENTRES)], to=TensorProto.FLOAT)
    flat = g.op("Reshape", [centroids, g.const([spaces * CENTROIDS, entry["dsub"]], "shape", np.int64)])
    codes = g.op("Cast", [g.stored(key + CODES)], to=TensorProto.INT64)  # [kept, spaces]
    index = g.op("Add", [codes, g.const(np.arange(spaces) * CENTROIDS, "offsets", np.int64)])
    dense = g.op("Reshape", [g.op("Gather", [flat, index], axis=0), g.const([-1, dim], "shape", np.int64)])
    if entry["kept"] == rows:
        return str(dense)
    packed = g.op(
        "Unsqueeze", [g.op("Cast", [g.stored(key + KEPT)], to=TensorProto.INT64), g.const([1], "axis", np.int64)]
    )
    bits = g.op(
        "Mod", [g.op("Div", [packed, g.const(2 ** np.arange(8), "bit", np.int64)]), g.const(2, "two", np.int64)]
    )
    bits = g.op(
        "Slice",
        [
            g.op("Reshape", [bits, g.const([-1], "flat", np.int64)]),
            g.const([0], "start", np.int64),
            g.const([rows], "rows", np.int64),
        ],
    )
    position = g.op("Mul", [g.op("CumSum", [bits, g.const(0, "axis", np.int64)]), bits])  # kept: 1.., pruned: 0
    padded = g.op("Concat", [g.const(np.zeros((1, dim)), "zero_row"), dense], axis=0)
    return str(g.op("Gather", [padded, position], axis=0))


def _stack(g: _Graph, parts: list[str]) -> str:
    """Per-direction blocks [k, ...] -> [D, k, ...], as ONNX's recurrent ops take W, R and B."""
    axis = g.const([0], "axis0", np.int64)
    return str(g.op("Concat", [g.op("Unsqueeze", [p, axis]) for p in parts], axis=0))


def _gru_blocks(g: _Graph, prefix: str, cell: str, hidden: int) -> tuple[str, str, str]:
    """One direction's (W [3H, I], R [3H, H], B [6H]) in ONNX's gate order (z, r, h)."""
    if cell == "gru":

        def zrh(key: str) -> str:
            r, z, n = g.op("Split", [g.weight(f"{prefix}.rnn.{key}")], outputs=3, axis=0)
            return str(g.op("Concat", [z, r, n], axis=0))

        bias = g.op("Concat", [zrh("bias_ih_l0"), zrh("bias_hh_l0")], axis=0)
        return zrh("weight_ih_l0"), zrh("weight_hh_l0"), bias
    H = hidden
    big = np.iinfo(np.int64).max

    def columns(name: str, start: int, end: int, negate: bool) -> str:
        bounds = [g.const([start], "start", np.int64), g.const([end], "end", np.int64)]
        part = g.op("Slice", [g.weight(f"{prefix}.cell.{name}"), *bounds, g.const([1], "axis1", np.int64)])
        return str(g.op("Neg", [part]) if negate else part)

    def blocks(start: int, end: int) -> str:  # columns h first, then x
        return str(g.op("Concat", [columns(n, start, end, n == "W_z") for n in ("W_z", "W_r", "W")], axis=0))

    bias = [g.op("Neg", [g.weight(f"{prefix}.cell.b_z")]), g.weight(f"{prefix}.cell.b_r"), g.weight(f"{prefix}.cell.b")]
    return blocks(H, big), blocks(0, H), g.op("Concat", [*bias, g.const(np.zeros(3 * H), "zeros")], axis=0)


def _lstm_blocks(g: _Graph, prefix: str) -> tuple[str, str, str]:
    """One direction's (W [4H, I], R [4H, H], B [8H]) in ONNX's gate order (i, o, f, c)."""

    def iofc(key: str) -> str:
        i, f, c, o = g.op("Split", [g.weight(f"{prefix}.rnn.{key}")], outputs=4, axis=0)
        return str(g.op("Concat", [i, o, f, c], axis=0))

    bias = g.op("Concat", [iofc("bias_ih_l0"), iofc("bias_hh_l0")], axis=0)
    return iofc("weight_ih_l0"), iofc("weight_hh_l0"), bias


def _pool(g: _Graph, states: str, mask: str, minus_inf: str, lengths_f: str, mode: str, last: str | None) -> str:
    """states [T, D, B, H] (padding zeroed or masked) -> [B, D * k * H], per direction (max, mean) as
    grutext.model.pool orders them."""
    parts = []
    if mode in ("max", "maxmean"):
        parts.append(g.op("ReduceMax", [g.op("Add", [states, minus_inf])], axes=[0], keepdims=0))  # [D, B, H]
    if mode in ("mean", "maxmean"):
        total = g.op("ReduceSum", [g.op("Mul", [states, mask]), g.const([0], "axis0", np.int64)], keepdims=0)
        parts.append(g.op("Div", [total, lengths_f]))  # lengths_f [1, B, 1]
    if mode == "last":
        assert last is not None
        parts.append(last)  # [D, B, H]
    stacked = g.op("Concat", [g.op("Unsqueeze", [p, g.const([2], "axis", np.int64)]) for p in parts], axis=2)
    by_batch = g.op("Transpose", [stacked], perm=[1, 0, 2, 3])  # [B, D, k, H]
    return str(g.op("Reshape", [by_batch, g.const([0, -1], "shape", np.int64)]))


def _bigram_bag(g: _Graph, table: str, ids: str, lengths: str, time: str, buckets: int, chars: bool) -> str:
    """GRUClassifier.bigram_bag as nodes: [B, D], the mean of the rows of a text's tokens and bigrams (and, with
    `chars`, of the rows the inputs grams / gram_counts give, each weighed by its count: the words' character
    n-grams)."""
    from onnx import TensorProto

    vocab = g.source.shape("embedding.weight")[0]
    one, end = g.const([1], "one", np.int64), g.const([np.iinfo(np.int64).max], "end", np.int64)
    axis = g.const([1], "axis1", np.int64)
    first = g.op("Slice", [ids, g.const([0], "zero1", np.int64), g.const([-1], "minus1", np.int64), axis])
    second = g.op("Slice", [ids, one, end, axis])
    pairs = g.op("Add", [g.op("Mul", [first, g.const(BIGRAM_HASH, "hash", np.int64)]), second])
    bucket = g.op("Mod", [pairs, g.const(buckets, "buckets", np.int64)])
    pairs = g.op("Add", [bucket, g.const(vocab, "vocab", np.int64)])  # [B, T-1], as grutext.model.bigram_ids
    column = g.op("Unsqueeze", [lengths, g.const([1], "axis", np.int64)])  # [B, 1]
    position = g.op("Unsqueeze", [time, g.const([0], "axis0", np.int64)])  # [1, T]
    later = g.op("Slice", [position, one, end, axis])  # [1, T-1]
    real = g.op("Concat", [g.op("Less", [position, column]), g.op("Less", [later, column])], axis=1)  # [B, 2T-1]
    parts, weight = [ids, pairs], [g.op("Cast", [real], to=TensorProto.FLOAT)]
    if chars:  # the distinct n-gram rows, each weighed by its count (0 in the padding)
        parts.append("grams")
        weight.append("gram_counts")
    grams = g.op("Concat", parts, axis=1)  # [B, 2T-1 (+G)]
    mask = g.op("Unsqueeze", [g.op("Concat", weight, axis=1), g.const([2], "axis2", np.int64)])
    rows = g.op("Gather", [table, grams], axis=0)  # [B, 2T-1, D]
    total = g.op("ReduceSum", [g.op("Mul", [rows, mask]), axis], keepdims=0)
    return str(g.op("Div", [total, g.op("ReduceSum", [mask, axis], keepdims=0)]))


def build(weights: dict[str, Array] | Source, cfg: ModelConfig, num_labels: int, multi_label: bool) -> Any:
    """The ONNX model of a GRUClassifier with these weights (arrays are written into the graph)."""
    from onnx import TensorProto, helper

    g = _Graph(weights if isinstance(weights, Source) else Source(weights))
    H, dirs = cfg.hidden_size, 2 if cfg.bidirectional else 1
    ids, lengths = "ids", "lengths"
    # Lengths as the recurrent ops take them, and the masks pooling needs (all [T, 1, B, 1]-broadcastable).
    seq_lens = g.op("Cast", [lengths], to=TensorProto.INT32)
    ids_t = g.op("Transpose", [ids], perm=[1, 0])  # [T, B]
    steps = g.op("Gather", [g.op("Shape", [ids_t]), g.const(0, "zero", np.int64)], axis=0)
    time = g.op("Range", [g.const(0, "start", np.int64), steps, g.const(1, "delta", np.int64)])  # [T]
    real = g.op("Less", [g.op("Unsqueeze", [time, g.const([1], "axis", np.int64)]), lengths])  # [T, B]
    real = g.op("Unsqueeze", [real, g.const([1, 3], "axes", np.int64)])  # [T, 1, B, 1]
    mask = g.op("Cast", [real], to=TensorProto.FLOAT)
    minus_inf = g.op("Where", [real, g.const(0.0, "zero_f"), g.const(-np.inf, "minus_inf")])
    lengths_f = g.op("Unsqueeze", [g.op("Cast", [lengths], to=TensorProto.FLOAT), g.const([0, 2], "axes", np.int64)])

    x = g.op("Gather", [g.weight("embedding.weight"), ids_t], axis=0)  # [T, B, E]
    embedded = x
    last = None
    for depth in range(cfg.layers):
        stacks = ["forward_layers", "backward_layers"][:dirs]
        prefixes = [f"encoder.{stack}.{depth}" for stack in stacks]
        direction = "bidirectional" if dirs == 2 else "forward"
        if cfg.cell == "lstm":
            blocks = [_lstm_blocks(g, p) for p in prefixes]
        else:
            blocks = [_gru_blocks(g, p, cfg.cell, H) for p in prefixes]
        W, R, B = (_stack(g, [b[i] for b in blocks]) for i in range(3))
        if cfg.cell == "lstm":
            y, last = g.op("LSTM", [x, W, R, B, seq_lens], outputs=3, hidden_size=H, direction=direction)[:2]
        else:
            lbr = 1 if cfg.cell == "gru" else 0
            y, last = g.op(
                "GRU", [x, W, R, B, seq_lens], outputs=2, hidden_size=H, direction=direction, linear_before_reset=lbr
            )
        states = y  # [T, D, B, H]
        if depth + 1 < cfg.layers:  # the next layer reads both directions side by side, in time order
            x = g.op("Reshape", [g.op("Transpose", [y], perm=[0, 2, 1, 3]), g.const([0, 0, -1], "shape", np.int64)])
    pooled = _pool(g, states, mask, minus_inf, lengths_f, cfg.pooling, last)
    if cfg.embedding_skip:
        skip_mode = "mean" if cfg.pooling == "last" else cfg.pooling
        as_dir = g.op("Unsqueeze", [embedded, g.const([1], "axis", np.int64)])  # [T, 1, B, E]
        pooled = g.op("Concat", [pooled, _pool(g, as_dir, mask, minus_inf, lengths_f, skip_mode, None)], axis=1)
    logits = g.op(
        "Gemm",
        [pooled, g.weight("classifier.weight"), g.weight("classifier.bias")],
        transB=1,
    )
    if cfg.bigram_buckets:  # the bag of tokens and hashed bigrams, its logits averaged with the GRU's
        table, bag_w, bag_b = (
            g.weight(f"bigram_{k}") for k in ("table.weight", "classifier.weight", "classifier.bias")
        )
        chars = cfg.char_span is not None
        if num_labels < g.source.shape("bigram_classifier.weight")[1]:
            # The head is linear: the mean of the rows' logits is the logits of their mean. A table of each
            # row's logits (folded at load) makes the gather num_labels wide, not bigram_dim.
            folded = g.op("Gemm", [table, bag_w], transB=1)  # [rows, C]
            bag_logits = g.op("Add", [_bigram_bag(g, folded, ids, lengths, time, cfg.bigram_buckets, chars), bag_b])
        else:
            bag = _bigram_bag(g, table, ids, lengths, time, cfg.bigram_buckets, chars)
            bag_logits = g.op("Gemm", [bag, bag_w, bag_b], transB=1)
        logits = g.op("Mul", [g.op("Add", [logits, bag_logits]), g.const(0.5, "half")])
    if multi_label:
        g.nodes.append(helper.make_node("Sigmoid", [logits], ["probs"]))
    else:
        g.nodes.append(helper.make_node("Softmax", [logits], ["probs"], axis=1))
    graph = helper.make_graph(
        g.nodes,
        "grutext",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "time"]),
            helper.make_tensor_value_info(lengths, TensorProto.INT64, ["batch"]),
            *(
                [
                    helper.make_tensor_value_info("grams", TensorProto.INT64, ["batch", "grams"]),
                    helper.make_tensor_value_info("gram_counts", TensorProto.FLOAT, ["batch", "grams"]),
                ]
                if cfg.char_span is not None
                else []
            ),
        ],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", num_labels])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="grutext")
    model.ir_version = 8  # readable by onnxruntime 1.14 and later
    return model


def export(meta: Meta, output: Path | None = None) -> Path:
    """Write the checkpoint's model as ONNX, atomically, as `model.onnx` inside the checkpoint (reading its
    weights from model.safetensors), and a standalone copy at `output` (a file, or a folder to hold model.onnx)
    when given; returns where the copy went."""
    path = meta.path / WEIGHTS_FILE
    source = Source.external(path, meta.compression)
    if meta.compression is None and any(dtype != np.float32 for dtype in source.dtypes.values()):
        source = Source(_stored_weights(path, np.float32))  # the graph computes in float32: such a file is copied in
    target = meta.path / ONNX_FILE
    tags = fingerprint(meta)  # hashes the weights file: once, for both graphs
    write_file(target, _serialized(meta, source, tags), check=_check)
    if output is not None:
        if output.is_dir():
            output = output / ONNX_FILE
        standalone = Source(_stored_weights(path, None if meta.compression else np.float32), meta.compression)
        write_file(output, _serialized(meta, standalone, tags), check=_check)
        return output
    return target


def _stored_weights(path: Path, dtype: Any = None) -> dict[str, npt.NDArray[Any]]:
    """The tensors of a safetensors file (as `dtype`, when given)."""
    from safetensors.numpy import load_file

    try:
        return {k: v if dtype is None else v.astype(dtype) for k, v in load_file(str(path)).items()}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path} cannot be read ({exc}); the checkpoint is damaged") from None


def _serialized(meta: Meta, source: Source, tags: dict[str, str]) -> bytes:
    model = build(source, meta.model_config, meta.shape.num_labels, meta.shape.multi_label)
    for key, value in tags.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return bytes(model.SerializeToString())


def _check(path: Path) -> None:
    """ONNX's checker on the written file, which finds the weights a graph reads beside it."""
    import onnx

    onnx.checker.check_model(str(path))


def write_file(target: Path, data: bytes, check: Callable[[Path], None] | None = None) -> None:
    """Write atomically (a temporary sibling, fsynced, `check`ed, renamed); a bad path is one CheckpointError."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {target}: {exc.strerror}; choose another path") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fingerprint(meta: Meta) -> dict[str, str]:
    """What ties a model.onnx to its checkpoint: the weights file's sha256, and the settings and labels it
    was built for. The ONNX engine refuses a graph whose fingerprint no longer matches."""
    model = to_dict(meta.model_config)
    if model.get("char_ngrams") == "0":  # as graphs written before the setting existed were fingerprinted
        del model["char_ngrams"]
    settings = json.dumps({"model": model, "shape": to_dict(meta.shape), "labels": meta.labels}, sort_keys=True)
    return {
        "grutext_weights_sha256": file_sha256(meta.path / WEIGHTS_FILE),
        "grutext_settings_sha256": hashlib.sha256(settings.encode()).hexdigest(),
    }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
