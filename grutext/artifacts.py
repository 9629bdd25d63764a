"""A checkpoint's files other than the weights, read and checked without torch: config.json, labels.json,
tokenizer.json, metrics.json. The torch engine (grutext.checkpoint) and the ONNX engine (grutext.onnx_engine)
both start here, so a checkpoint is checked the same way whichever runs it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from grutext.compress import check_spec
from grutext.config import (
    FORMAT_VERSION,
    LEGACY_CELLS,
    MAX_VOCAB,
    DataShape,
    ModelConfig,
    TokenizerConfig,
    from_dict,
    to_dict,
)
from grutext.decision import Decision
from grutext.errors import CheckpointError, ConfigError

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
ONNX_FILE = "model.onnx"
LANGUAGE_MODEL = "language_model"  # config.json's "kind" of a `grutext pretrain` checkpoint (a classifier's has none)
TRAINER_STATE_DIR = "trainer_state"
REQUIRED_FILES = (CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, LABELS_FILE)
MAX_JSON_BYTES = 16 * 2**20
MAX_TOKENIZER_BYTES = 512 * 2**20


@dataclass
class Meta:
    """Everything of a checked checkpoint but its weights."""

    path: Path
    config: dict[str, Any]
    model_config: ModelConfig
    shape: DataShape
    tokenizer_config: TokenizerConfig
    tokenizer: Tokenizer
    labels: list[str]
    decision: Decision | None  # multi-label: the thresholds tuned on validation data
    metrics: dict[str, Any]
    temperature: float = 1.0  # divides the logits (grutext.calibration); 1 for checkpoints written before it
    compression: dict[str, Any] | None = None  # how model.safetensors was compressed (grutext.compress); None: not


class MetaView:
    """What both engines tell of the checkpoint they run, read from its checked files (`self.meta`)."""

    meta: Meta

    @property
    def labels(self) -> list[str]:
        return self.meta.labels

    @property
    def multi_label(self) -> bool:
        return self.meta.shape.multi_label

    @property
    def config(self) -> dict[str, Any]:
        return self.meta.config

    @property
    def metrics(self) -> dict[str, Any]:
        """The checkpoint's metrics.json: scores at training time, per-epoch history."""
        return self.meta.metrics

    @property
    def tokenizer(self) -> Tokenizer:
        return self.meta.tokenizer

    @property
    def tokenizer_config(self) -> TokenizerConfig:
        return self.meta.tokenizer_config

    @property
    def model_config(self) -> ModelConfig:
        return self.meta.model_config

    def info(self) -> dict[str, Any]:
        """What `grutext info --json` prints."""
        return describe_meta(self.meta)


def read_json(path: Path, what: str) -> Any:
    """Parse a bounded JSON file; any failure is a CheckpointError naming the file."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path} is {size} bytes, more than a {what} can be; the checkpoint is damaged")
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the checkpoint is damaged, retrain it") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None


def read_config(path: str | Path, required: tuple[str, ...] = REQUIRED_FILES) -> tuple[Path, dict[str, Any]]:
    """A checkpoint directory and its config.json, after the checks every kind of checkpoint shares: it exists,
    holds the files it must, and a format this grutext reads."""
    root = Path(path)
    if not root.exists():
        raise CheckpointError(f"no checkpoint at {root}; train one with `grutext train DATA --output {root}`")
    if not root.is_dir():
        raise CheckpointError(f"{root} is a file; --model takes a checkpoint directory")
    if not (root / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"{root} is not a grutext checkpoint (no {CONFIG_FILE}); pass the directory `grutext train` wrote"
        )
    config = read_json(root / CONFIG_FILE, "config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{root / CONFIG_FILE} must hold a JSON object")
    missing = [name for name in required if not (root / name).is_file()]
    if config.get("kind") == LANGUAGE_MODEL:
        missing = [name for name in missing if name != LABELS_FILE]
    if missing:
        raise CheckpointError(
            f"checkpoint {root} is incomplete: missing {', '.join(missing)}; retrain, or copy the whole directory"
        )
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{root / CONFIG_FILE} has no valid format_version; the checkpoint is damaged")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {root} has format_version {version}, newer than this grutext reads ({FORMAT_VERSION}); "
            "upgrade grutext (pip install -U grutext)"
        )
    return root, config


def read_meta(path: str | Path) -> Meta:
    """Read and check a classifier checkpoint directory's files but the weights; every problem is a
    CheckpointError saying what to do."""
    root, config = read_config(path)
    if config.get("kind") == LANGUAGE_MODEL:
        raise CheckpointError(
            f"{root} is a language model (grutext pretrain): it does not label texts; train a classifier from it "
            f"with `grutext train DATA --init-from {root}`"
        )
    try:
        model_cfg, shape = _model_sections(config, f"{root / CONFIG_FILE}")
        tok_cfg = from_dict(TokenizerConfig, config.get("tokenizer"), f"{root / CONFIG_FILE} [tokenizer]")
    except ConfigError as exc:
        raise CheckpointError(f"{exc}; the checkpoint is damaged or was edited by hand") from None

    labels = read_json(root / LABELS_FILE, "label list")
    if (
        not isinstance(labels, list)
        or not all(isinstance(x, str) and x for x in labels)
        or len(set(labels)) != len(labels)
    ):
        raise CheckpointError(f"{root / LABELS_FILE} must be a list of distinct, non-empty label names")
    if len(labels) != shape.num_labels:
        raise CheckpointError(
            f"{root / LABELS_FILE} lists {len(labels)} labels but config.json says num_labels="
            f"{shape.num_labels}; the checkpoint is inconsistent, retrain it"
        )

    decision = None
    if shape.multi_label:
        try:
            decision = Decision.from_dict(config["decision"], labels)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{root / CONFIG_FILE}: a multi-label model needs a valid 'decision' section ({exc}); "
                "the checkpoint is damaged, retrain it"
            ) from None
    tokenizer = _load_tokenizer(root / TOKENIZER_FILE, shape.vocab_size, tok_cfg)
    metrics_path = root / METRICS_FILE
    metrics = read_json(metrics_path, "metrics file") if metrics_path.is_file() else {}
    compression = None
    if "compression" in config:
        compression = check_spec(config["compression"], table_shapes(model_cfg, shape), f"{root / CONFIG_FILE}")
    return Meta(
        root,
        config,
        model_cfg,
        shape,
        tok_cfg,
        tokenizer,
        labels,
        decision,
        metrics,
        _temperature(config, root),
        compression,
    )


def table_shapes(cfg: ModelConfig, shape: DataShape) -> dict[str, tuple[int, ...]]:
    """The shapes of the tables a text reads rows of (grutext.model.GRUClassifier), from the settings alone."""
    tables: dict[str, tuple[int, ...]] = {"embedding.weight": (shape.vocab_size, cfg.embedding_size)}
    if cfg.bigram_buckets:
        tables["bigram_table.weight"] = (shape.vocab_size + cfg.bigram_buckets, cfg.bigram_dim)
    return tables


def _temperature(config: dict[str, Any], root: Path) -> float:
    """The calibration's temperature: 1 where config.json has none (written before calibration existed)."""
    section = config.get("calibration")
    value = section.get("temperature", 1.0) if isinstance(section, dict) else 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.01 <= value <= 100:
        raise CheckpointError(f"{root / CONFIG_FILE}: calibration.temperature must be a number from 0.01 to 100")
    return float(value)


def _model_sections(config: dict[str, Any], where: str) -> tuple[ModelConfig, DataShape]:
    """The architecture and the data's shape; format 1 kept both in "model" and named the cells torch/seed."""
    model = config.get("model")
    if not isinstance(model, dict):
        raise ConfigError(f"{where} [model]: expected a JSON object")
    shape = config.get("shape")
    if shape is None:  # format 1
        shape = {k: model[k] for k in ("vocab_size", "num_labels", "multi_label") if k in model}
        model = {k: v for k, v in model.items() if k not in shape}
    model = {**model, "cell": LEGACY_CELLS.get(model.get("cell"), model.get("cell"))}  # type: ignore[arg-type]
    model.setdefault("bigram_buckets", 0)  # written before the bigram head: none, whatever today's default is
    model.setdefault("char_ngrams", "0")  # likewise, written before the head read character n-grams
    return from_dict(ModelConfig, model, f"{where} [model]"), from_dict(DataShape, shape, f"{where} [shape]")


def _load_tokenizer(path: Path, vocab_size: int, tok_cfg: TokenizerConfig) -> Tokenizer:
    from grutext.tokenizer import configure_truncation

    size = path.stat().st_size
    if size > MAX_TOKENIZER_BYTES:
        raise CheckpointError(f"{path} is {size} bytes, larger than any tokenizer grutext writes")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed files
        raise CheckpointError(f"{path} is not a valid tokenizer ({exc}); the checkpoint is damaged") from None
    if tokenizer.get_vocab_size() != vocab_size:
        raise CheckpointError(
            f"{path} has {tokenizer.get_vocab_size()} tokens but config.json says vocab_size="
            f"{vocab_size}; the checkpoint is inconsistent, retrain it"
        )
    configure_truncation(tokenizer, tok_cfg)  # config.json is the authority on max_length
    return tokenizer


@dataclass
class LanguageModelMeta:
    """Everything of a checked language-model checkpoint (grutext pretrain) but its weights."""

    path: Path
    config: dict[str, Any]
    model_config: ModelConfig
    vocab_size: int
    tokenizer_config: TokenizerConfig
    tokenizer: Tokenizer
    metrics: dict[str, Any]


def read_language_model(path: str | Path) -> LanguageModelMeta:
    """Read and check a language-model checkpoint's files but the weights; a classifier, or anything else, is
    a CheckpointError saying what --init-from takes."""
    root, config = read_config(path)
    if config.get("kind") != LANGUAGE_MODEL:
        raise CheckpointError(f"{root} is not a language model; --init-from takes what `grutext pretrain` wrote")
    where = f"{root / CONFIG_FILE}"
    try:
        model_cfg = from_dict(ModelConfig, config.get("model"), f"{where} [model]")
        vocab_size = config.get("vocab_size")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 2 <= vocab_size <= MAX_VOCAB:
            raise ConfigError(f"{where}: vocab_size must be an integer from 2 to {MAX_VOCAB}, got {vocab_size!r}")
        tok_cfg = from_dict(TokenizerConfig, config.get("tokenizer"), f"{where} [tokenizer]")
    except ConfigError as exc:
        raise CheckpointError(f"{exc}; the checkpoint is damaged or was edited by hand") from None
    if not model_cfg.resolved:
        raise CheckpointError(f"{where}: the model settings are not settled; the checkpoint is damaged")
    tokenizer = _load_tokenizer(root / TOKENIZER_FILE, vocab_size, tok_cfg)
    metrics_path = root / METRICS_FILE
    metrics = read_json(metrics_path, "metrics file") if metrics_path.is_file() else {}
    return LanguageModelMeta(root, config, model_cfg, vocab_size, tok_cfg, tokenizer, metrics)


def describe_language_model(meta: LanguageModelMeta) -> dict[str, Any]:
    """What `grutext info --json` prints of a language model."""
    return {
        "path": str(meta.path),
        "kind": LANGUAGE_MODEL,
        "grutext_version": meta.config.get("grutext_version"),
        "format_version": meta.config.get("format_version"),
        "parameters": parameter_count(meta.path / WEIGHTS_FILE),
        "model": to_dict(meta.model_config),
        "vocab_size": meta.vocab_size,
        "tokenizer": to_dict(meta.tokenizer_config),
        "pretrain": meta.config.get("pretrain", {}),
        "corpus": meta.config.get("corpus", {}),
        "perplexity": meta.metrics.get("perplexity"),
        "best_epoch": meta.metrics.get("best_epoch"),
        "train_seconds": meta.metrics.get("train_seconds"),
        "tokens_per_s": meta.metrics.get("tokens_per_s"),
    }


SCORE_KEYS = ("accuracy", "micro_f1", "macro_f1", "weighted_f1", "samples_f1", "subset_accuracy", "ece", "n")


def parameter_count(path: Path, compression: dict[str, Any] | None = None) -> int:
    """The number of weights in a safetensors file, from its header (no tensor is read); a compressed table
    counts as the rows x dim it stands for."""
    from safetensors import SafetensorError, safe_open

    from grutext.compress import CENTRES, CODES, INT8, KEPT, PQ, SCALE

    try:
        with safe_open(str(path), framework="numpy") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}); the checkpoint is damaged") from None
    count = 0
    for key, entry in (compression or {}).get("tensors", {}).items():
        if entry["kind"] == PQ:  # codes, centroids and bitmap stand for rows x dim
            count += entry["rows"] * entry["dim"]
            for suffix in (CODES, CENTRES, KEPT):
                shapes.pop(key + suffix, None)
        elif entry["kind"] == INT8:  # the values count, their scales do not
            shapes.pop(key + SCALE, None)
    return count + sum(int(np.prod(shape)) for shape in shapes.values())


def checkpoint_bytes(root: Path) -> dict[str, int]:
    """The size of each file of a checkpoint (trainer state left out)."""
    return {p.name: p.stat().st_size for p in sorted(root.iterdir()) if p.is_file()}


def describe_meta(ckpt: Meta) -> dict[str, Any]:
    """What a checkpoint is, as `grutext info --json` prints it: labels, size, settings, data and scores."""
    scores = {
        split: {k: ckpt.metrics[split][k] for k in SCORE_KEYS if k in ckpt.metrics[split]}
        for split in ("validation", "test")
        if ckpt.metrics.get(split)
    }
    return {
        "path": str(ckpt.path),
        "grutext_version": ckpt.config.get("grutext_version"),
        "format_version": ckpt.config.get("format_version"),
        "labels": ckpt.labels,
        "parameters": parameter_count(ckpt.path / WEIGHTS_FILE, ckpt.compression),
        "bytes": checkpoint_bytes(ckpt.path),
        "compression": ckpt.compression,
        "model": to_dict(ckpt.model_config),
        "shape": to_dict(ckpt.shape),
        "tokenizer": to_dict(ckpt.tokenizer_config),
        "train": ckpt.config.get("train", {}),
        "data": ckpt.config.get("data", {}),
        "init_from": ckpt.config.get("init_from"),
        "self_training": ckpt.config.get("self_training"),
        "scores": scores,
        "multi_label": ckpt.shape.multi_label,
        "decision": ckpt.config.get("decision"),
        "calibration": ckpt.config.get("calibration", {"temperature": ckpt.temperature}),
        "best_epoch": ckpt.metrics.get("best_epoch"),
        "train_seconds": ckpt.metrics.get("train_seconds"),
    }
