"""Where a classifier run starts when it does not start from scratch (`grutext train --init-from DIR`):

  * a language model (`grutext pretrain`): its tokenizer, word table and encoder; a fresh classifier head;
  * a classifier: all of it, to go on training on new data. Its labels keep their rows (and their order), and a
    label the new data adds gets a new row.

The checkpoint fixes the tokenizer and the encoder's shape, so those settings come from it; one given on the
command line that disagrees is refused rather than ignored. A tokenizer that does not fit the data's language
(most of its tokens unknown) is refused too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from grutext.artifacts import LANGUAGE_MODEL, read_config
from grutext.config import ModelConfig, TokenizerConfig, to_dict
from grutext.errors import CheckpointError, DataError, UsageError
from grutext.model import GRUClassifier
from grutext.tokenizer import encode, unknown_share

TOKENIZER_FIELDS = ("kind", "vocab_size", "lowercase", "min_frequency")  # what the trained vocabulary fixes
ENCODER_FIELDS = ("embed_dim", "hidden_size", "layers", "bidirectional", "cell")  # what the weights' shapes fix
UNKNOWN_LIMIT = 0.5  # the share of [UNK] tokens in the training texts above which a tokenizer does not fit


@dataclass
class Start:
    """A checkpoint a classifier run starts from."""

    kind: str  # "language_model" or "classifier"
    path: Path
    tokenizer: Tokenizer
    tokenizer_config: TokenizerConfig
    model_config: ModelConfig
    weights: dict[str, torch.Tensor]
    labels: list[str]  # a classifier's, in its order; none for a language model
    config: dict[str, Any]  # its config.json

    def summary(self) -> dict[str, Any]:
        """config.json's "init_from" section: what the run started from."""
        out: dict[str, Any] = {"path": str(self.path), "kind": self.kind}
        for key in ("corpus", "pretrain", "data"):
            if key in self.config:
                out[key] = self.config[key]
        return out


def open_start(path: str) -> Start:
    """The checkpoint at `path`, checked and loaded on the CPU; anything else is a CheckpointError."""
    root, config = read_config(path)
    if config.get("kind") == LANGUAGE_MODEL:
        from grutext.checkpoint import load_language_model
        from grutext.lm import encoder_state

        meta, lm = load_language_model(root)
        return Start(
            LANGUAGE_MODEL,
            root,
            meta.tokenizer,
            meta.tokenizer_config,
            meta.model_config,
            encoder_state(lm),
            [],
            config,
        )
    from grutext.checkpoint import load

    ckpt = load(root)
    state = {k: v.detach().clone() for k, v in ckpt.model.state_dict().items()}
    return Start(
        "classifier", root, ckpt.tokenizer, ckpt.tokenizer_config, ckpt.model_config, state, ckpt.labels, config
    )


def settle(start: Start, tok_cfg: TokenizerConfig, model_cfg: ModelConfig) -> tuple[TokenizerConfig, ModelConfig]:
    """The run's tokenizer and model settings with what the checkpoint fixes taken from it. A setting the user
    changed from its default to something else than the checkpoint's is a usage error."""
    fixed_tokenizer = {k: getattr(start.tokenizer_config, k) for k in TOKENIZER_FIELDS}
    # A language model fixes the encoder's shape; a classifier its whole architecture (dropout stays a choice).
    fields = (
        ENCODER_FIELDS
        if start.kind == LANGUAGE_MODEL
        else tuple(k for k in to_dict(start.model_config) if k != "dropout")
    )
    fixed_model = {k: getattr(start.model_config, k) for k in fields}
    conflicts = [
        *_conflicts(to_dict(tok_cfg), to_dict(TokenizerConfig()), fixed_tokenizer, _TOKENIZER_FLAGS),
        *_conflicts(to_dict(model_cfg), to_dict(ModelConfig()), fixed_model, {}),
    ]
    if conflicts:
        raise UsageError(
            f"--init-from {start.path} fixes {', '.join(conflicts)}; drop those options (they come from it)"
        )
    return dataclasses.replace(tok_cfg, **fixed_tokenizer), dataclasses.replace(model_cfg, **fixed_model)


_TOKENIZER_FLAGS = {"kind": "tokenizer"}


def _conflicts(
    given: dict[str, Any], default: dict[str, Any], fixed: dict[str, Any], flags: dict[str, str]
) -> list[str]:
    return [
        f"--{flags.get(k, k).replace('_', '-')} ({fixed[k]!r}, not {given[k]!r})"
        for k in fixed
        if given[k] != default[k] and given[k] is not None and given[k] != fixed[k]
    ]


def run_labels(start: Start | None, data_labels: list[str]) -> list[str]:
    """The run's label order: a classifier's own labels first, in its order, then those the data adds."""
    if start is None or not start.labels:
        return data_labels
    return [*start.labels, *(label for label in data_labels if label not in set(start.labels))]


def check_fit(tokenizer: Tokenizer, texts: list[str], tok_cfg: TokenizerConfig, start: Start) -> float:
    """The share of [UNK] tokens the start's tokenizer makes of (a sample of) the training texts; refuses a
    tokenizer that knows too little of them, most likely one trained on another language."""
    ids = encode(tokenizer, texts[:2000], tok_cfg)
    tokens, unknown = unknown_share(ids)
    if tokens == 0 or unknown > UNKNOWN_LIMIT:
        raise DataError(
            f"--init-from {start.path}: its tokenizer does not fit this data ({unknown:.0%} of the training texts' "
            "tokens are unknown to it; was it trained on another language?); pretrain on texts like these, or "
            "train without --init-from"
        )
    return unknown


def load_into(model: GRUClassifier, start: Start, labels: list[str]) -> None:
    """Copy the start's weights into a freshly built classifier: a language model's word table and encoder (the
    heads stay fresh); a classifier's every weight, its labels' rows of the output layers into theirs."""
    state = model.state_dict()
    rows = {name: i for i, name in enumerate(labels)}
    for key, value in start.weights.items():
        if key not in state:
            raise CheckpointError(f"--init-from {start.path}: {key} has no place in this model")
        target = state[key]
        if key.endswith(("classifier.weight", "classifier.bias")) and start.labels:
            index = torch.tensor([rows[name] for name in start.labels])
            target.index_copy_(0, index, value.to(target))
        elif target.shape != value.shape:
            raise CheckpointError(
                f"--init-from {start.path}: {key} is {tuple(value.shape)}, the model's {tuple(target.shape)}"
            )
        else:
            target.copy_(value)
    model.load_state_dict(state)
