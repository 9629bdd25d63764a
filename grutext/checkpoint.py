"""The checkpoint directory: JSON + tokenizer.json + safetensors, written atomically, checked on load.

    models/<name>/
      config.json        format_version, grutext_version, model/tokenizer/train/data sections
      tokenizer.json     the trained tokenizer (normalizer, pre-tokenizer, vocabulary, truncation)
      model.safetensors  weights
      labels.json        label names; index == class id
      metrics.json       scores of the saved model (informational)

Nothing here is ever unpickled. Sizes in config.json are bounded by the config dataclasses and shapes are
compared with what config.json implies before a single weight is allocated.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from grutext import __version__
from grutext.backend import choose, prepare
from grutext.config import FORMAT_VERSION, LEGACY_CELLS, DataShape, ModelConfig, TokenizerConfig, from_dict, to_dict
from grutext.decision import Decision
from grutext.errors import CheckpointError, ConfigError
from grutext.head import Head, make_head
from grutext.model import GRUClassifier, parameter_shapes

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
TRAINER_STATE_DIR = "trainer_state"
REQUIRED_FILES = (CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, LABELS_FILE)
MAX_JSON_BYTES = 16 * 2**20
MAX_TOKENIZER_BYTES = 512 * 2**20


@dataclass
class Checkpoint:
    """A loaded, checked checkpoint, ready for inference."""

    path: Path
    model: GRUClassifier
    tokenizer: Tokenizer
    tokenizer_config: TokenizerConfig
    model_config: ModelConfig
    shape: DataShape
    head: Head  # the labels, and for a multi-label model its tuned decision thresholds
    config: dict[str, Any]
    metrics: dict[str, Any]
    backend: str  # how the model runs here: "fast" (CPU) or "reference"

    @property
    def labels(self) -> list[str]:
        return self.head.labels

    @property
    def multi_label(self) -> bool:
        return self.shape.multi_label


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Fail before training, not after it, when the checkpoint could not be written."""
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"--output {path} is a file; choose a directory path")
    if _is_nonempty_dir(path) and not overwrite:
        if (path / TRAINER_STATE_DIR / STATE_JSON).is_file():
            raise CheckpointError(
                f"--output {path} holds an interrupted run that can be resumed: add --resume to continue it, or "
                "--overwrite to discard it and start over"
            )
        raise CheckpointError(f"--output {path} exists and is not empty; pass --overwrite or choose another path")
    parent = path.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{path.name}.probe-", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise CheckpointError(f"cannot write to {parent}: {exc.strerror}; choose another --output") from None


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_atomically(path: Path, overwrite: bool, fill: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling directory, then rename it into place; a failure leaves `path` as it was."""
    check_output_dir(path, overwrite)
    parent = path.absolute().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    old: Path | None = None
    try:
        fill(tmp)
        for file in tmp.rglob("*"):
            if file.is_file():
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
            os.replace(path, old / "previous")
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old / "previous", path)  # put the previous checkpoint back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path


def save(
    path: Path,
    *,
    model: GRUClassifier,
    tokenizer: Tokenizer,
    tokenizer_config: TokenizerConfig,
    labels: list[str],
    sections: dict[str, Any],
    metrics: dict[str, Any],
    overwrite: bool,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a complete checkpoint directory atomically. `sections` adds e.g. train/data to config.json."""
    config = {
        "format_version": FORMAT_VERSION,
        "grutext_version": __version__,
        "model": to_dict(model.cfg),
        "shape": to_dict(model.shape),
        "tokenizer": to_dict(tokenizer_config),
        **sections,
    }

    def fill(tmp: Path) -> None:
        _write_json(tmp / CONFIG_FILE, config)
        tokenizer.save(str(tmp / TOKENIZER_FILE))
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "grutext_version": __version__})
        _write_json(tmp / LABELS_FILE, labels)
        _write_json(tmp / METRICS_FILE, metrics)
        if extra is not None:
            extra(tmp)

    return write_atomically(path, overwrite, fill)


SCORE_KEYS = ("accuracy", "micro_f1", "macro_f1", "weighted_f1", "samples_f1", "subset_accuracy", "n")


def describe(ckpt: Checkpoint) -> dict[str, Any]:
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
        "parameters": ckpt.model.num_parameters(),
        "model": to_dict(ckpt.model_config),
        "shape": to_dict(ckpt.shape),
        "tokenizer": to_dict(ckpt.tokenizer_config),
        "train": ckpt.config.get("train", {}),
        "data": ckpt.config.get("data", {}),
        "scores": scores,
        "multi_label": ckpt.multi_label,
        "decision": ckpt.config.get("decision"),
        "best_epoch": ckpt.metrics.get("best_epoch"),
        "train_seconds": ckpt.metrics.get("train_seconds"),
    }


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


def load(path: str | Path, device: torch.device | None = None, backend: str = "auto") -> Checkpoint:
    """Load and check a checkpoint directory; every problem is a CheckpointError saying what to do. The model
    runs on `device` (the CPU by default) with `backend` (see grutext.backend)."""
    root = Path(path)
    if not root.exists():
        raise CheckpointError(f"no checkpoint at {root}; train one with `grutext train DATA --output {root}`")
    if not root.is_dir():
        raise CheckpointError(f"{root} is a file; --model takes a checkpoint directory")
    if not (root / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"{root} is not a grutext checkpoint (no {CONFIG_FILE}); pass the directory `grutext train` wrote"
        )
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {root} is incomplete: missing {', '.join(missing)}; retrain, or copy the whole directory"
        )
    config = read_json(root / CONFIG_FILE, "config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{root / CONFIG_FILE} must hold a JSON object")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{root / CONFIG_FILE} has no valid format_version; the checkpoint is damaged")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {root} has format_version {version}, newer than this grutext reads ({FORMAT_VERSION}); "
            "upgrade grutext (pip install -U grutext)"
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
    tokenizer = _load_tokenizer(root / TOKENIZER_FILE, shape, tok_cfg)
    device = device or torch.device("cpu")
    runs_on = choose(device, backend)
    model = prepare(_load_weights(root / WEIGHTS_FILE, model_cfg, shape), device, runs_on).eval()
    metrics_path = root / METRICS_FILE
    metrics = read_json(metrics_path, "metrics file") if metrics_path.is_file() else {}
    head = make_head(labels, shape.multi_label, decision)
    return Checkpoint(root, model, tokenizer, tok_cfg, model_cfg, shape, head, config, metrics, runs_on)


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
    return from_dict(ModelConfig, model, f"{where} [model]"), from_dict(DataShape, shape, f"{where} [shape]")


def _load_tokenizer(path: Path, shape: DataShape, tok_cfg: TokenizerConfig) -> Tokenizer:
    from grutext.tokenizer import configure_truncation

    size = path.stat().st_size
    if size > MAX_TOKENIZER_BYTES:
        raise CheckpointError(f"{path} is {size} bytes, larger than any tokenizer grutext writes")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed files
        raise CheckpointError(f"{path} is not a valid tokenizer ({exc}); the checkpoint is damaged") from None
    if tokenizer.get_vocab_size() != shape.vocab_size:
        raise CheckpointError(
            f"{path} has {tokenizer.get_vocab_size()} tokens but config.json says vocab_size="
            f"{shape.vocab_size}; the checkpoint is inconsistent, retrain it"
        )
    configure_truncation(tokenizer, tok_cfg)  # config.json is the authority on max_length
    return tokenizer


def _load_weights(path: Path, cfg: ModelConfig, shape: DataShape) -> GRUClassifier:
    expected = parameter_shapes(cfg, shape)
    try:
        with safe_open(str(path), framework="pt") as fh:
            found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}); the checkpoint is damaged") from None
    if found != expected:
        missing = sorted(set(expected) - set(found))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        extra = sorted(set(found) - set(expected))
        details = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                ", ".join(f"{k} is {found[k]} not {expected[k]}" for k in wrong),
                f"unexpected {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise CheckpointError(f"{path} does not match config.json ({details}); the checkpoint is inconsistent")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); the checkpoint is damaged") from None
    model = GRUClassifier(cfg, shape)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


# ---------------------------------------------------------------------------------------------- trainer state
# What --resume needs, as safetensors (tensors) and JSON (everything else): never a pickle.

STATE_JSON = "state.json"
CURRENT_WEIGHTS = "model.safetensors"
BEST_WEIGHTS = "best.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"


@dataclass
class TrainerState:
    """Everything needed to continue an interrupted run exactly where it stopped."""

    loop: dict[str, Any]  # epoch, step, scores, history ... (JSON)
    model: dict[str, torch.Tensor]  # weights at the interruption
    best: dict[str, torch.Tensor]  # weights of the best epoch so far
    optimizer: dict[str, Any]  # an optimizer state_dict
    scheduler: dict[str, Any]  # a scheduler state_dict
    rng: dict[str, torch.Tensor]  # torch RNG states


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def write_trainer_state(root: Path, state: TrainerState) -> None:
    """Write trainer_state/ under a checkpoint directory being filled."""
    folder = root / TRAINER_STATE_DIR
    folder.mkdir()
    save_file(_tensors(state.model), str(folder / CURRENT_WEIGHTS))
    save_file(_tensors(state.best), str(folder / BEST_WEIGHTS))
    save_file(_tensors(state.rng), str(folder / RNG_FILE))
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, entries in state.optimizer["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    save_file(_tensors(tensors), str(folder / OPTIMIZER_FILE))
    meta = {
        "loop": state.loop,
        "optimizer": {"param_groups": state.optimizer["param_groups"], "plain_state": plain},
        "scheduler": state.scheduler,
    }
    _write_json(folder / STATE_JSON, meta)


def resumable_position(root: Path) -> tuple[int, int] | None:
    """(epoch, step) of the interrupted run saved in `root`, or None when it holds no resumable state."""
    path = root / TRAINER_STATE_DIR / STATE_JSON
    if not path.is_file():
        return None
    try:
        loop = read_json(path, "trainer state")["loop"]
        return int(loop["epoch"]), int(loop["step"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return (0, 0)  # damaged, but still a state that --overwrite throws away


def read_trainer_state(root: Path) -> TrainerState:
    """Read trainer_state/ back; a missing or damaged file is a CheckpointError."""
    folder = root / TRAINER_STATE_DIR
    if not (folder / STATE_JSON).is_file():
        raise CheckpointError(
            f"{root} holds no resumable training state ({TRAINER_STATE_DIR}/{STATE_JSON}); it was not interrupted, "
            "or it finished: train without --resume"
        )
    meta = read_json(folder / STATE_JSON, "trainer state")

    def tensors(name: str) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(folder / name))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{folder / name} cannot be read ({exc}); resume is not possible, retrain") from None

    try:
        optimizer_state: dict[Any, dict[str, Any]] = {}
        for key, value in tensors(OPTIMIZER_FILE).items():
            pid, name = key.split(".", 1)
            optimizer_state.setdefault(int(pid), {})[name] = value
        for pid, entries in meta["optimizer"]["plain_state"].items():
            optimizer_state.setdefault(int(pid), {}).update(entries)
        optimizer = {"state": optimizer_state, "param_groups": meta["optimizer"]["param_groups"]}
        return TrainerState(
            meta["loop"],
            tensors(CURRENT_WEIGHTS),
            tensors(BEST_WEIGHTS),
            optimizer,
            meta["scheduler"],
            tensors(RNG_FILE),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / STATE_JSON} is damaged ({exc}); resume is not possible, retrain") from None
