"""The checkpoint directory: JSON + tokenizer.json + safetensors, written atomically, checked on load.

    models/<name>/
      config.json        format_version, grutext_version, model/shape/tokenizer/train/data sections
      tokenizer.json     the trained tokenizer (normalizer, pre-tokenizer, vocabulary, truncation)
      model.safetensors  weights
      model.onnx         the same model as an ONNX graph reading its weights from model.safetensors
                         (grutext.onnx_export), for the torch-free engine
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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from grutext import __version__
from grutext.artifacts import (
    CONFIG_FILE,
    LABELS_FILE,
    LANGUAGE_MODEL,
    METRICS_FILE,
    TOKENIZER_FILE,
    TRAINER_STATE_DIR,
    WEIGHTS_FILE,
    LanguageModelMeta,
    Meta,
    describe_meta,
    read_json,
    read_language_model,
    read_meta,
)
from grutext.backend import choose, prepare
from grutext.compress import NGRAMS, Settings, compress, decompress, stored_shapes
from grutext.config import FORMAT_VERSION, DataShape, ModelConfig, TokenizerConfig, to_dict
from grutext.errors import CheckpointError
from grutext.head import Head, make_head
from grutext.lm import LanguageModel
from grutext.model import GRUClassifier, parameter_shapes


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
    meta: Meta  # the checked files other than the weights

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


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc), else by setting it back."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_default_modes(root: Path) -> None:
    """Give `root` and everything under it the modes a plain mkdir/open gives under the user's umask.

    tempfile.mkdtemp makes private (0700) directories and safetensors writes private (0600) files, so without
    this a checkpoint renamed into place could be read by its writer only (a service account serving it
    failed with "Permission denied")."""
    mask = current_umask()
    os.chmod(root, 0o777 & ~mask)
    for path in root.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_model(
    root: Path, config: dict[str, Any], tokenizer: Tokenizer, model: torch.nn.Module, metrics: dict[str, Any]
) -> None:
    """The files every kind of checkpoint has: config.json, tokenizer.json, model.safetensors, metrics.json."""
    _write_json(root / CONFIG_FILE, config)
    tokenizer.save(str(root / TOKENIZER_FILE))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    # One metadata key: safetensors writes the metadata in hash-map order, so two keys made the same weights
    # two different files from run to run (the version is in config.json).
    save_file(state, str(root / WEIGHTS_FILE), metadata={"format": "pt"})
    _write_json(root / METRICS_FILE, metrics)


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
        give_default_modes(tmp)
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
    with_onnx: bool = True,
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
        _write_model(tmp, config, tokenizer, model, metrics)
        _write_json(tmp / LABELS_FILE, labels)
        if with_onnx:  # every checkpoint predicts on the ONNX engine: no torch import, 2x the lines/s
            from grutext.onnx_export import export

            try:
                export(read_meta(tmp))
            except Exception as exc:  # the model is what training made: keep it, torch can run it
                warnings.warn(
                    f"model.onnx could not be written ({type(exc).__name__}: {exc}); predict runs the torch engine "
                    "(retry with `grutext export`)",
                    stacklevel=2,
                )
        if extra is not None:
            extra(tmp)

    return write_atomically(path, overwrite, fill)


def save_compressed(meta: Meta, path: Path, settings: Settings, overwrite: bool) -> Path:
    """Write a compressed copy of a classifier checkpoint (grutext.compress) atomically at `path`: the same
    settings, tokenizer, labels and scores, model.safetensors compressed, and a model.onnx that reads it."""
    from safetensors.numpy import save_file as save_arrays

    from grutext.onnx_export import export

    if meta.compression is not None:
        raise CheckpointError(f"{meta.path} is compressed already; compress the checkpoint it was made from")
    if path.absolute() == meta.path.absolute():
        raise CheckpointError(f"--output is the checkpoint itself ({path}); write the compressed copy elsewhere")
    check_output_dir(path, overwrite)  # before the minutes of k-means, not after
    state = _read_checked(meta.path / WEIGHTS_FILE, parameter_shapes(meta.model_config, meta.shape))
    dense = {k: v.float().numpy() for k, v in state.items()}
    stored, spec = compress(dense, settings, softmax=not meta.shape.multi_label)
    config = {**meta.config, "grutext_version": __version__, "compression": spec}
    if "folded_bigram_dim" in spec:  # the bigram table now holds each row's logits, as wide as its entry says
        config["model"] = {**config["model"], "bigram_dim": spec["tensors"][NGRAMS]["dim"]}

    def fill(tmp: Path) -> None:
        _write_json(tmp / CONFIG_FILE, config)
        meta.tokenizer.save(str(tmp / TOKENIZER_FILE), pretty=False)  # a third smaller than the indented file
        save_arrays(stored, str(tmp / WEIGHTS_FILE), metadata={"format": "np"})
        _write_json(tmp / LABELS_FILE, meta.labels)
        _write_json(tmp / METRICS_FILE, meta.metrics)
        export(read_meta(tmp))

    return write_atomically(path, overwrite, fill)


def save_language_model(
    path: Path,
    *,
    model: LanguageModel,
    tokenizer: Tokenizer,
    tokenizer_config: TokenizerConfig,
    sections: dict[str, Any],
    metrics: dict[str, Any],
    overwrite: bool,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a language model's checkpoint directory atomically: config.json (kind "language_model"),
    tokenizer.json, model.safetensors, metrics.json; no labels and no ONNX graph (it labels nothing)."""
    config = {
        "format_version": FORMAT_VERSION,
        "grutext_version": __version__,
        "kind": LANGUAGE_MODEL,
        "model": to_dict(model.cfg),
        "vocab_size": model.vocab_size,
        "tokenizer": to_dict(tokenizer_config),
        **sections,
    }

    def fill(tmp: Path) -> None:
        _write_model(tmp, config, tokenizer, model, metrics)
        if extra is not None:
            extra(tmp)

    return write_atomically(path, overwrite, fill)


def load_language_model(path: str | Path) -> tuple[LanguageModelMeta, LanguageModel]:
    """A checked language model (grutext pretrain) on the CPU, its shapes compared with config.json first."""
    meta = read_language_model(path)
    expected = {
        k: tuple(v.shape)
        for k, v in LanguageModel(meta.model_config, meta.vocab_size, device="meta").state_dict().items()
    }
    state = _read_checked(meta.path / WEIGHTS_FILE, expected)
    model = LanguageModel(meta.model_config, meta.vocab_size)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return meta, model


def describe(ckpt: Checkpoint) -> dict[str, Any]:
    """What a checkpoint is, as `grutext info --json` prints it (see grutext.artifacts.describe)."""
    return describe_meta(ckpt.meta)


def load(path: str | Path, device: torch.device | None = None, backend: str = "auto") -> Checkpoint:
    """Load and check a checkpoint directory; every problem is a CheckpointError saying what to do. The model
    runs on `device` (the CPU by default) with `backend` (see grutext.backend)."""
    meta = read_meta(path)
    device = device or torch.device("cpu")
    runs_on = choose(device, backend)
    weights = _load_weights(meta.path / WEIGHTS_FILE, meta.model_config, meta.shape, meta.compression)
    model = prepare(weights, device, runs_on).eval()
    head = make_head(meta.labels, meta.shape.multi_label, meta.decision, meta.temperature)
    return Checkpoint(
        meta.path,
        model,
        meta.tokenizer,
        meta.tokenizer_config,
        meta.model_config,
        meta.shape,
        head,
        meta.config,
        meta.metrics,
        runs_on,
        meta,
    )


def _load_weights(
    path: Path, cfg: ModelConfig, shape: DataShape, compression: dict[str, Any] | None = None
) -> GRUClassifier:
    if compression is None:
        state = _read_checked(path, parameter_shapes(cfg, shape))
    else:  # the stored tensors, checked, then the float32 weights they stand for
        stored = _read_checked(path, stored_shapes(parameter_shapes(cfg, shape), compression))
        dense = decompress({k: v.numpy() for k, v in stored.items()}, compression)
        state = {k: torch.from_numpy(v) for k, v in dense.items()}
    model = GRUClassifier(cfg, shape)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


def _read_checked(path: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The weights of a safetensors file, after its header's names and shapes are compared with what config.json
    implies (nothing is allocated for a file that does not match)."""
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
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); the checkpoint is damaged") from None


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
