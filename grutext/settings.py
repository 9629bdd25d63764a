"""A run's settings, from the command line's names to the config dataclasses, and checked against an
interrupted run's before it is resumed. One mapping serves `grutext train`, `grutext.train()` and tune."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grutext.artifacts import read_json
from grutext.config import LEGACY_CELLS, ModelConfig, PretrainConfig, TokenizerConfig, TrainConfig, to_dict
from grutext.errors import ConfigError


@dataclass(frozen=True)
class DataSpec:
    """Where the training data comes from and how to read it."""

    source: str
    text_column: str | None = None
    label_column: str | None = None
    config_name: str | None = None
    revision: str | None = None
    encoding: str = "utf-8"
    on_bad_row: str = "fail"
    label_sep: str | None = None  # split string labels on this separator (multi-label)

    def read_options(self) -> dict[str, Any]:
        """The reading options, as load_labelled and open_stream take them."""
        return {name: getattr(self, name) for name in DATA_OPTIONS}


DATA_OPTIONS = ("text_column", "label_column", "config_name", "revision", "encoding", "on_bad_row", "label_sep")
TOKENIZER_OPTIONS = {"tokenizer": "kind", "vocab_size": "vocab_size", "lowercase": "lowercase"}
TOKENIZER_OPTIONS |= {"max_length": "max_length", "truncation": "truncation", "min_frequency": "min_frequency"}


def configs_from_options(
    source: str, options: Mapping[str, Any]
) -> tuple[DataSpec, TokenizerConfig, ModelConfig, TrainConfig]:
    """Settings named as the command line names them (`embed_dim` for --embed-dim, `tokenizer` for
    --tokenizer), left out for their defaults, as the four config objects: the one mapping from flags to
    fields, shared by `grutext train` and `grutext.train()`."""
    groups: dict[str, dict[str, Any]] = {"data": {}, "tokenizer": {}, "model": {}, "train": {}}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = []
    for name, value in options.items():
        if name in DATA_OPTIONS:
            groups["data"][name] = value
        elif name in TOKENIZER_OPTIONS:
            groups["tokenizer"][TOKENIZER_OPTIONS[name]] = value
        elif name in model_fields:
            groups["model"][name] = value
        elif name in train_fields:
            groups["train"][name] = value
        else:
            unknown.append(name)
    if unknown:
        known = sorted([*DATA_OPTIONS, *TOKENIZER_OPTIONS, *model_fields, *train_fields])
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return (
        DataSpec(source, **groups["data"]),
        TokenizerConfig(**groups["tokenizer"]),
        ModelConfig(**groups["model"]),
        TrainConfig(**groups["train"]),
    )


PRETRAIN_TOKENIZER = {"tokenizer": "kind", "vocab_size": "vocab_size", "lowercase": "lowercase"}
PRETRAIN_MODEL = ("embed_dim", "hidden_size", "layers", "bidirectional", "dropout", "cell")


def pretrain_configs(options: Mapping[str, Any]) -> tuple[TokenizerConfig, ModelConfig, PretrainConfig]:
    """`grutext pretrain`'s settings, named as its flags name them, as the config objects."""
    tokenizer = {PRETRAIN_TOKENIZER[k]: v for k, v in options.items() if k in PRETRAIN_TOKENIZER}
    model = {k: v for k, v in options.items() if k in PRETRAIN_MODEL}
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(options) - set(PRETRAIN_TOKENIZER) - set(PRETRAIN_MODEL) - fields)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
    rest = {k: v for k, v in options.items() if k in fields}
    if rest.get("streaming") is None:
        rest.pop("streaming", None)
    return TokenizerConfig(**tokenizer), ModelConfig(**model), PretrainConfig(**rest)


def resumed_settings(
    output: Path, tok_cfg: TokenizerConfig, model_cfg: ModelConfig, cfg: TrainConfig
) -> tuple[ModelConfig, dict[str, Any]]:
    """The model settings of the interrupted run saved in `output`, where these leave them to their defaults,
    and that run's config.json; refuses settings that differ from it."""
    saved = read_json(output / "config.json", "config")
    saved_model = _legacy_cells(saved.get("model", {}))
    if model_cfg.embed_dim is None:  # the default (or the vectors') dimension, resolved by that run
        model_cfg = dataclasses.replace(model_cfg, embed_dim=saved_model.get("embed_dim"))
    if model_cfg.bigram_buckets is None:  # the default: the head that run had (none, if it predates the head)
        model_cfg = dataclasses.replace(model_cfg, bigram_buckets=saved_model.get("bigram_buckets", 0))
    if model_cfg.char_ngrams is None:  # likewise: the n-grams that run read (none, if it predates them)
        model_cfg = dataclasses.replace(model_cfg, char_ngrams=saved_model.get("char_ngrams", "0"))
    differences = [
        *_differences(saved.get("tokenizer", {}), to_dict(tok_cfg)),
        *_differences(saved_model, to_dict(model_cfg)),
        *_train_differences(saved.get("train", {}), _saved_multi_label(saved), cfg),
    ]
    if differences:
        raise ConfigError(
            f"cannot resume {output}: settings differ from the interrupted run ({'; '.join(differences)}); "
            "resume with the original settings, or start a new run (another --output, or --overwrite)"
        )
    return model_cfg, saved


def _legacy_cells(model: dict[str, Any]) -> dict[str, Any]:
    """A saved model section in today's terms (format 1 named the cells torch/seed)."""
    return {**model, "cell": LEGACY_CELLS.get(model.get("cell", ""), model.get("cell"))}


def _saved_multi_label(config: dict[str, Any]) -> bool:
    return bool(config.get("shape", config.get("model", {})).get("multi_label"))


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    return [f"{key}: {saved.get(key)!r} -> {value!r}" for key, value in current.items() if saved.get(key) != value]


def _train_differences(saved: dict[str, Any], multi_label: bool, cfg: TrainConfig) -> list[str]:
    """Changed training settings, with the learning rate as resolved (not the `None` that means "default")."""
    current = to_dict(cfg)
    saved = {**saved, "device": cfg.device}  # the device may change between runs
    if "resolved_lr" in saved:
        current["lr"] = cfg.resolved_lr(multi_label)
        saved["lr"] = saved["resolved_lr"]
    return _differences(saved, current)
