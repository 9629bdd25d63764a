"""Compressed checkpoints: product quantization and pruning rebuild what they promise, the ONNX graph rebuilds
the same weights as the torch engine, and a compressed checkpoint runs everywhere the original does."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from grutext.batching import pad
from grutext.cli import cli
from grutext.compress import Settings, compress, decompress, kmeans, quantize, stored_shapes, sub_size
from grutext.config import DataShape, ModelConfig
from grutext.model import GRUClassifier, parameter_shapes
from grutext.onnx_export import Source, build
from tests.conftest import settled
from tests.test_onnx import same_up_to_rounding


def test_a_table_of_few_distinct_sub_vectors_comes_back_exactly() -> None:
    rng = np.random.default_rng(0)
    levels = np.arange(-8, 8, dtype=np.float32) / 8  # exact in float16
    table = rng.choice(levels, size=(500, 6)).astype(np.float32)  # 16 x 16 = 256 distinct pairs at most
    stored, spec = compress({"embedding.weight": table}, Settings(dsub=2))
    assert stored["embedding.weight.codes"].shape == (500, 3) and stored["embedding.weight.codes"].dtype == np.uint8
    np.testing.assert_array_equal(decompress(stored, spec)["embedding.weight"], table)


def test_kmeans_error_falls_with_each_iteration_and_with_smaller_sub_vectors() -> None:
    rng = np.random.default_rng(1)
    points = rng.normal(size=(3000, 2)).astype(np.float32)

    def error(iterations: int) -> float:
        codes, centres = kmeans(points, iterations, np.random.default_rng(0))
        return float(((centres[codes] - points) ** 2).sum())

    assert error(10) < error(0)
    table = rng.normal(size=(2000, 8)).astype(np.float32)
    errors = []
    for dsub in (1, 2, 4):
        codes, centroids = quantize(table, dsub, 10, np.random.default_rng(0))
        rebuilt = np.concatenate([centroids[m][codes[:, m]] for m in range(8 // dsub)], axis=1)
        errors.append(float(((rebuilt - table) ** 2).mean()))
    assert errors[0] < errors[1] < errors[2] < float((table**2).mean())


def test_pruning_keeps_the_rows_of_largest_norm_and_zeroes_the_rest() -> None:
    table = np.outer(np.arange(1, 21, dtype=np.float32), np.ones(4, dtype=np.float32))[::-1].copy()  # norms 20..1
    np.random.default_rng(2).shuffle(table)
    stored, spec = compress({"bigram_table.weight": table}, Settings(dsub=2, keep=0.25))
    entry = spec["tensors"]["bigram_table.weight"]
    assert entry["kept"] == 5 and stored["bigram_table.weight.kept"].shape == (3,)
    rebuilt = decompress(stored, spec)["bigram_table.weight"]
    kept = table[:, 0] > 15
    np.testing.assert_allclose(rebuilt[kept], table[kept], atol=0.02)
    assert not rebuilt[~kept].any()


def test_int8_rows_come_back_within_half_a_step() -> None:
    from grutext.compress import to_int8

    matrix = np.random.default_rng(3).normal(size=(6, 40)).astype(np.float32)
    matrix[2] = 0.0  # a zero row keeps a usable scale
    values, scale = to_int8(matrix)
    assert values.dtype == np.int8 and np.abs(values).max() == 127 and scale[2] == 1.0
    rebuilt = decompress({"w.int8": values, "w.scale": scale}, {"tensors": {"w": {"kind": "int8"}}})["w"]
    assert (np.abs(rebuilt - matrix) <= scale[:, None] / 2 + 1e-7).all()


def test_sub_vectors_fit_the_width() -> None:
    assert [sub_size(128, 2), sub_size(7, 2), sub_size(50, 4), sub_size(3, 8)] == [2, 1, 2, 3]


@pytest.mark.parametrize("keep", [1.0, 0.3])
@pytest.mark.parametrize("cell", ["gru", "cho2014"])
def test_the_graph_rebuilds_the_weights_the_torch_engine_rebuilds(cell: str, keep: float) -> None:
    torch.manual_seed(0)
    cfg = settled(ModelConfig(embed_dim=8, hidden_size=5, cell=cell, bigram_buckets=300, bigram_dim=6), False)
    shape = DataShape(40, 3, False)
    model = GRUClassifier(cfg, shape).eval()
    softmax = cell == "gru"  # a single-label model's table drops a column
    dense_kind = "int8" if cell == "gru" else "float16"
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    stored, spec = compress(state, Settings(dsub=2, keep=keep, dense=dense_kind), softmax=softmax)
    assert spec["folded_bigram_dim"] == 6
    width = 2 if softmax else 3
    folded = parameter_shapes(dataclasses.replace(cfg, bigram_dim=width), shape)
    assert {k: v.shape for k, v in stored.items()} == stored_shapes(folded, spec)
    if dense_kind == "int8":
        assert stored["classifier.weight.int8"].dtype == np.int8 and stored["classifier.weight.scale"].shape == (3,)
    else:
        assert stored["classifier.weight"].dtype == np.float16
    assert stored["classifier.bias"].dtype == np.float32
    cfg = dataclasses.replace(cfg, bigram_dim=width)  # the bigram head folded into its table
    dense = GRUClassifier(cfg, shape).eval()
    dense.load_state_dict({k: torch.from_numpy(v) for k, v in decompress(stored, spec).items()})
    session = ort.InferenceSession(build(Source(stored, spec), cfg, 3, False).SerializeToString())
    ids, lengths = pad([[2, 5, 7, 3, 9], [4], [9, 8, 30, 31]], range(3))
    ours = session.run(None, {"ids": ids, "lengths": lengths})[0]
    with torch.no_grad():
        theirs = torch.softmax(dense(torch.from_numpy(ids), torch.from_numpy(lengths)), dim=1).numpy()
        original = torch.softmax(model(torch.from_numpy(ids), torch.from_numpy(lengths)), dim=1).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    if keep == 1.0:  # quantized, not pruned: close to the original
        np.testing.assert_allclose(ours, original, rtol=0, atol=0.05)


@pytest.fixture(scope="module")
def compressed(trained_chars: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compressed") / "small"
    result = CliRunner().invoke(cli, ["compress", "-m", str(trained_chars), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: " in result.stderr and "x smaller)" in result.stderr
    return out


def test_a_compressed_checkpoint_is_smaller_and_labels_as_the_original(
    trained_chars: Path, compressed: Path, split_dir: Path
) -> None:
    def size(root: Path) -> int:
        return sum(p.stat().st_size for p in root.iterdir())

    assert size(compressed) * 3 < size(trained_chars)
    text = "a wonderful superb film\n\nawful and dull\nthe plot\n"
    lines = {}
    for model in (trained_chars, compressed):
        for engine in ("torch", "onnx"):
            args = ["predict", "-m", str(model), "--engine", engine, "--format", "jsonl"]
            result = CliRunner().invoke(cli, args, input=text)
            assert result.exit_code == 0, result.output
            lines[model, engine] = result.stdout
    assert same_up_to_rounding(lines[compressed, "torch"], lines[compressed, "onnx"])
    original = [json.loads(line)["label"] for line in lines[trained_chars, "torch"].splitlines()]
    assert [json.loads(line)["label"] for line in lines[compressed, "onnx"].splitlines()] == original
    scores = [
        json.loads(CliRunner().invoke(cli, ["evaluate", "-m", str(m), str(split_dir), "--json"]).stdout)["accuracy"]
        for m in (trained_chars, compressed)
    ]
    assert abs(scores[0] - scores[1]) <= 0.02


def test_info_and_the_python_api_read_a_compressed_checkpoint(trained_chars: Path, compressed: Path) -> None:
    import grutext

    described = json.loads(CliRunner().invoke(cli, ["info", "-m", str(compressed), "--json"]).stdout)
    original = json.loads(CliRunner().invoke(cli, ["info", "-m", str(trained_chars), "--json"]).stdout)
    assert described["model"]["bigram_dim"] == 1 and described["compression"]["folded_bigram_dim"] == 32
    rows = original["shape"]["vocab_size"] + original["model"]["bigram_buckets"]
    assert original["parameters"] - described["parameters"] == rows * 31 + 2 * 32 - 2 * 1
    assert described["compression"]["tensors"]["embedding.weight"]["kind"] == "pq"
    assert sum(described["bytes"].values()) < sum(original["bytes"].values())
    table = CliRunner().invoke(cli, ["info", "-m", str(compressed)])
    assert "one-byte codes a row" in table.stderr and "int8" in table.stderr and "folded" in table.stderr
    from grutext.engine import load_engine

    for model in (grutext.load(compressed), load_engine(compressed, "onnx")):
        assert model.predict(["a wonderful superb film"])[0].label == "pos"


def test_a_standalone_export_of_a_compressed_checkpoint_stays_small(compressed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(compressed, copy)
    result = CliRunner().invoke(cli, ["export", "-m", str(copy), "--output", str(tmp_path / "alone.onnx")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "alone.onnx").stat().st_size < (copy / "model.safetensors").stat().st_size + 50_000
    shutil.copy(tmp_path / "alone.onnx", copy / "model.onnx")
    text = "a wonderful superb film\nawful and dull\n"
    a = CliRunner().invoke(cli, ["predict", "-m", str(copy), "--format", "jsonl"], input=text)
    b = CliRunner().invoke(cli, ["predict", "-m", str(compressed), "--format", "jsonl"], input=text)
    assert a.exit_code == 0 and a.stdout == b.stdout


def test_compress_refuses_what_it_cannot_do(compressed: Path, trained_chars: Path, tmp_path: Path) -> None:
    again = CliRunner().invoke(cli, ["compress", "-m", str(compressed), "-o", str(tmp_path / "x")])
    assert again.exit_code == 1 and "compressed already" in again.output
    itself = CliRunner().invoke(cli, ["compress", "-m", str(trained_chars), "-o", str(trained_chars), "--overwrite"])
    assert itself.exit_code == 1 and "the checkpoint itself" in itself.output
    bad = CliRunner().invoke(cli, ["compress", "-m", str(trained_chars), "-o", str(tmp_path / "y"), "--keep-rows", "0"])
    assert bad.exit_code == 2 and not (tmp_path / "y").exists()
    exists = CliRunner().invoke(cli, ["compress", "-m", str(trained_chars), "-o", str(compressed)])
    assert exists.exit_code == 1 and "--overwrite" in exists.output


def test_a_damaged_compression_section_is_refused(compressed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(compressed, copy)
    config = json.loads((copy / "config.json").read_text())
    config["compression"]["tensors"]["embedding.weight"]["kept"] = 10**9
    (copy / "config.json").write_text(json.dumps(config))
    for engine in ("torch", "onnx"):
        result = CliRunner().invoke(cli, ["predict", "-m", str(copy), "--engine", engine], input="superb\n")
        assert result.exit_code == 1 and "the compression section is invalid" in result.output
        assert "Traceback" not in result.output


def test_folding_the_bigram_head_changes_no_logit() -> None:
    torch.manual_seed(0)
    cfg = settled(ModelConfig(embed_dim=8, hidden_size=5, bigram_buckets=300, bigram_dim=6), False)
    model = GRUClassifier(cfg, DataShape(40, 3, False)).eval()
    from grutext.compress import fold_bigram_head

    ids, lengths = pad([[2, 5, 7, 3, 9], [4], [9, 8, 30, 31]], range(3))
    with torch.no_grad():
        logits = model(torch.from_numpy(ids), torch.from_numpy(lengths))
    for softmax, width in ((False, 3), (True, 2)):
        state, was = fold_bigram_head({k: v.numpy() for k, v in model.state_dict().items()}, softmax)
        assert was == 6 and state["bigram_table.weight"].shape == (340, width)
        folded = GRUClassifier(dataclasses.replace(cfg, bigram_dim=width), DataShape(40, 3, False)).eval()
        folded.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        with torch.no_grad():
            again = folded(torch.from_numpy(ids), torch.from_numpy(lengths))
        if softmax:  # the same probabilities; the logits move by one number a text
            torch.testing.assert_close(again.softmax(1), logits.softmax(1), rtol=0, atol=1e-6)
        else:
            torch.testing.assert_close(again, logits, rtol=0, atol=1e-5)
    wide = {k: v.numpy() for k, v in GRUClassifier(cfg, DataShape(40, 7, False)).state_dict().items()}
    assert fold_bigram_head(wide)[1] == 0  # 7 labels, 6 wide: folding would not shrink it


def test_serve_runs_a_compressed_checkpoint(compressed: Path) -> None:
    import signal

    from tests.test_serve import request, start

    proc, port = start(compressed)
    try:
        texts = ["a wonderful superb film", "awful and dull"]
        status, body = request(port, "POST", "/predict", json.dumps({"texts": texts}).encode())
        cli_out = CliRunner().invoke(
            cli, ["predict", "-m", str(compressed), "--format", "jsonl"], input="\n".join(texts)
        )
        assert status == 200 and body["predictions"] == [json.loads(line) for line in cli_out.stdout.splitlines()]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_training_goes_on_from_a_compressed_checkpoint(compressed: Path, split_dir: Path, tmp_path: Path) -> None:
    """--init-from reads a compressed classifier through the same rebuild; the new run writes a plain checkpoint
    with the folded architecture."""
    out = tmp_path / "again"
    options = ["--batch-size", "16", "--lr", "0.01", "--epochs", "1"]  # the architecture comes from the start
    args = ["train", str(split_dir), "-o", str(out), "--init-from", str(compressed), *options]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert "compression" not in config and config["model"]["bigram_dim"] == 1
    predicted = CliRunner().invoke(cli, ["predict", "-m", str(out)], input="a wonderful superb film\n")
    assert predicted.exit_code == 0 and predicted.stdout in ("pos\n", "neg\n")
