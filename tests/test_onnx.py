"""ONNX export and the ONNX engine: every architecture the checkpoint format allows gives the torch model's
probabilities, predict's output is the same on both engines, and the ONNX engine never imports torch."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from grutext.backend import prepare
from grutext.batching import pad
from grutext.cli import cli
from grutext.config import DataShape, ModelConfig
from grutext.model import GRUClassifier
from grutext.onnx_export import build
from tests.conftest import settled

ARCHITECTURES = [
    *itertools.product(["gru", "cho2014", "lstm"], [True, False], [1, 2], ["maxmean"], [False]),
    *itertools.product(["gru"], [True], [1], ["last", "mean", "max"], [False, True]),
    ("cho2014", False, 2, "last", True),
    ("lstm", True, 1, "max", True),
]


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize(("cell", "bidirectional", "layers", "pooling", "skip"), ARCHITECTURES)
def test_graph_gives_the_torch_models_probabilities(
    cell: str, bidirectional: bool, layers: int, pooling: str, skip: bool, multi_label: bool
) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        embed_dim=7, hidden_size=5, cell=cell, bidirectional=bidirectional, layers=layers, pooling=pooling,
        embedding_skip=skip,
    )  # fmt: skip
    cfg = settled(cfg, multi_label)
    model = prepare(GRUClassifier(cfg, DataShape(30, 4, multi_label)), torch.device("cpu"), "reference").eval()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    session = ort.InferenceSession(build(weights, cfg, 4, multi_label).SerializeToString())
    rng = np.random.default_rng(1)
    texts = [rng.integers(2, 30, n).tolist() for n in (1, 9, 4, 17, 2, 6)]
    ids, lengths = pad(texts, range(len(texts)))
    ours = session.run(None, {"ids": ids, "lengths": lengths})[0]
    with torch.no_grad():
        logits = model(torch.from_numpy(ids), torch.from_numpy(lengths))
    theirs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("bigram_dim", [3, 8])  # 8 > 4 labels: the graph gathers from a table of rows' logits
@pytest.mark.parametrize("multi_label", [False, True])
def test_graph_gives_the_bigram_heads_probabilities(multi_label: bool, bigram_dim: int) -> None:
    torch.manual_seed(0)
    cfg = settled(ModelConfig(embed_dim=7, hidden_size=5, bigram_buckets=13, bigram_dim=bigram_dim), multi_label)
    model = prepare(GRUClassifier(cfg, DataShape(30, 4, multi_label)), torch.device("cpu"), "reference").eval()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    session = ort.InferenceSession(build(weights, cfg, 4, multi_label).SerializeToString())
    rng = np.random.default_rng(1)
    for sizes in ((1, 9, 4, 17, 2, 6), (1, 1)):  # one-token texts have no bigram; a batch of them, none at all
        ids, lengths = pad([rng.integers(2, 30, n).tolist() for n in sizes], range(len(sizes)))
        ours = session.run(None, {"ids": ids, "lengths": lengths})[0]
        with torch.no_grad():
            logits = model(torch.from_numpy(ids), torch.from_numpy(lengths))
        theirs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("onnx") / "m"
    shutil.copytree(trained, copy)
    result = CliRunner().invoke(cli, ["export", "--model", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "model.onnx").is_file() and f"wrote {copy / 'model.onnx'}" in result.stderr
    return copy


@pytest.mark.parametrize(
    "args", [[], ["--format", "tsv"], ["--format", "jsonl"], ["--top-k", "2"], ["--format", "jsonl", "--top-k", "2"]]
)
def test_both_engines_print_the_same_lines(exported: Path, args: list[str]) -> None:
    text = "a wonderful superb film\n\nawful and dull\nthe plot\n"
    outputs = {}
    for engine in ("torch", "onnx"):
        result = CliRunner().invoke(cli, ["predict", "-m", str(exported), "--engine", engine, *args], input=text)
        assert result.exit_code == 0, result.output
        outputs[engine] = result.stdout
    assert same_up_to_rounding(outputs["torch"], outputs["onnx"])
    assert outputs["onnx"].count("\n") == 4


def test_evaluate_on_both_engines(exported: Path, split_dir: Path) -> None:
    scores = [
        json.loads(
            CliRunner().invoke(cli, ["evaluate", "-m", str(exported), str(split_dir), "--engine", e, "--json"]).stdout
        )
        for e in ("torch", "onnx")
    ]
    assert scores[0]["accuracy"] == scores[1]["accuracy"] and scores[0]["n"] == 60


def test_auto_uses_onnx_without_importing_torch(exported: Path) -> None:
    code = (
        "import sys\nfrom grutext.cli import cli\n"
        f"cli(['predict', '-m', {str(exported)!r}], standalone_mode=False)\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], input=b"superb\n", capture_output=True, check=True)
    assert done.stdout == b"pos\n" and done.stderr.decode().strip().endswith("False")


def test_a_stale_graph_is_refused(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(exported, copy)
    config = json.loads((copy / "labels.json").read_text())
    (copy / "labels.json").write_text(json.dumps(list(reversed(config))))
    result = CliRunner().invoke(cli, ["predict", "-m", str(copy), "--engine", "onnx"], input="superb\n")
    assert result.exit_code == 1
    assert "was not exported from this checkpoint's weights and settings" in result.output
    assert "grutext export --model" in result.output


def test_every_trained_checkpoint_has_its_graph(trained: Path) -> None:
    result = CliRunner().invoke(cli, ["predict", "-m", str(trained), "--engine", "onnx"], input="superb\n")
    assert result.exit_code == 0 and result.stdout == "pos\n"


def test_onnx_engine_needs_model_onnx(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(trained, copy)
    (copy / "model.onnx").unlink()
    result = CliRunner().invoke(cli, ["predict", "-m", str(copy), "--engine", "onnx"], input="superb\n")
    assert result.exit_code == 1 and "has no model.onnx; run `grutext export" in result.output
    auto = CliRunner().invoke(cli, ["predict", "-m", str(copy)], input="superb\n")  # auto falls back to torch
    assert auto.exit_code == 0 and auto.stdout == "pos\n"
    usage = CliRunner().invoke(cli, ["predict", "-m", str(trained), "--engine", "onnx", "--device", "cuda"])
    assert usage.exit_code == 2


def test_multi_label_output_is_the_same_on_both_engines(tmp_path: Path) -> None:
    from tests.conftest import TINY, write_jsonl
    from tests.test_multilabel import multilabel_rows

    data = write_jsonl(tmp_path / "train.jsonl", multilabel_rows(300, 1))
    out = tmp_path / "m"
    trained = CliRunner().invoke(cli, ["train", str(data), "-o", str(out), *TINY, "--epochs", "6"])
    assert trained.exit_code == 0, trained.output
    assert CliRunner().invoke(cli, ["export", "-m", str(out)]).exit_code == 0
    text = "".join(r["text"] + "\n" for r in multilabel_rows(40, 9))
    for args in ([], ["--format", "tsv"], ["--threshold", "0.3"], ["--top-k", "2", "--format", "jsonl"]):
        torch_out = CliRunner().invoke(cli, ["predict", "-m", str(out), "--engine", "torch", *args], input=text)
        onnx_out = CliRunner().invoke(cli, ["predict", "-m", str(out), "--engine", "onnx", *args], input=text)
        assert same_up_to_rounding(torch_out.stdout, onnx_out.stdout), args


def same_up_to_rounding(a: str, b: str) -> bool:
    """The same lines, labels exactly, printed probabilities within 1e-4."""
    import re

    number = re.compile(r"\d\.\d+")
    for line_a, line_b in zip(a.splitlines(), b.splitlines(), strict=True):
        if number.sub("#", line_a) != number.sub("#", line_b):
            return False
        pairs = zip(number.findall(line_a), number.findall(line_b), strict=True)
        if any(abs(float(x) - float(y)) > 1e-4 for x, y in pairs):
            return False
    return a.count("\n") == b.count("\n")


@pytest.mark.parametrize("cell", ["gru", "cho2014", "lstm"])
def test_the_checkpoints_graph_reads_its_weights_from_model_safetensors(cell: str, tmp_path: Path) -> None:
    """Weights are stored once: model.onnx holds the graph, its initializers are spans of model.safetensors, and
    it gives the probabilities of a standalone graph with the weights inside (grutext export --output)."""
    import onnx

    from grutext.artifacts import read_meta
    from grutext.checkpoint import save
    from grutext.config import TokenizerConfig
    from grutext.onnx_export import export
    from grutext.tokenizer import train_tokenizer

    torch.manual_seed(0)
    cfg = settled(ModelConfig(embed_dim=7, hidden_size=5, cell=cell, bigram_buckets=13, bigram_dim=3), False)
    tok_cfg = TokenizerConfig(kind="word", vocab_size=100, min_frequency=1)
    tokenizer = train_tokenizer(["a b c d e f g h"] * 3, tok_cfg)
    shape = DataShape(tokenizer.get_vocab_size(), 3, False)
    model = GRUClassifier(cfg, shape)
    save(tmp_path / "m", model=model, tokenizer=tokenizer, tokenizer_config=tok_cfg, labels=["x", "y", "z"],
         sections={}, metrics={}, overwrite=False)  # fmt: skip
    graph = onnx.load(str(tmp_path / "m" / "model.onnx"), load_external_data=False)
    external = {t.name for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    assert len(external) == len(model.state_dict())
    assert all(e.value == "model.safetensors" for t in graph.graph.initializer for e in t.external_data[:1])
    standalone = export(read_meta(tmp_path / "m"), tmp_path / "copy.onnx")
    (tmp_path / "elsewhere").mkdir()
    moved = shutil.move(standalone, tmp_path / "elsewhere" / "model.onnx")
    ids, lengths = pad([[2, 5, 7, 3], [4], [9, 8]], range(3))
    feed = {"ids": ids, "lengths": lengths}
    ours = ort.InferenceSession(str(tmp_path / "m" / "model.onnx")).run(None, feed)[0]
    alone = ort.InferenceSession(Path(moved).read_bytes()).run(None, feed)[0]
    np.testing.assert_array_equal(ours, alone)
    with torch.no_grad():
        theirs = torch.softmax(model.eval()(torch.from_numpy(ids), torch.from_numpy(lengths)), dim=1).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    assert (tmp_path / "m" / "model.onnx").stat().st_size < 20_000


def test_a_checkpoint_with_the_weights_inside_its_graph_still_runs(exported: Path, tmp_path: Path) -> None:
    """Checkpoints written before the weights were stored once hold a standalone model.onnx."""
    copy = tmp_path / "m"
    shutil.copytree(exported, copy)
    result = CliRunner().invoke(cli, ["export", "-m", str(copy), "--output", str(tmp_path / "alone.onnx")])
    assert result.exit_code == 0, result.output
    shutil.copy(tmp_path / "alone.onnx", copy / "model.onnx")
    assert (copy / "model.onnx").stat().st_size > (copy / "model.safetensors").stat().st_size
    text = "a wonderful superb film\nawful and dull\n"
    old = CliRunner().invoke(cli, ["predict", "-m", str(copy), "--engine", "onnx", "--format", "jsonl"], input=text)
    new = CliRunner().invoke(cli, ["predict", "-m", str(exported), "--engine", "onnx", "--format", "jsonl"], input=text)
    assert old.exit_code == 0 and old.stdout == new.stdout
