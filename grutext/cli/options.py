"""The options of `grutext train` and `grutext pretrain`, as lists of click decorators: each flag named, bounded and
defaulted as grutext.config's own fields (tests/test_cli.py checks), applied with `apply`. Shared options are the
same objects for both commands; pretrain's optimisation options carry PretrainConfig's defaults."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from grutext.config import (
    BACKENDS,
    CELLS,
    DEFAULT_BIGRAM_BUCKETS,
    DEFAULT_CHAR_NGRAMS,
    DEFAULT_EPOCHS,
    DEFAULT_MIN_STEPS,
    DEVICES,
    EARLY_STOP_METRICS,
    MAX_DIM,
    MAX_LAYERS,
    MAX_VOCAB,
    MULTI_LABEL_LR,
    POOLINGS,
    PRETRAIN_EPOCHS,
    PRETRAIN_EPOCHS_VECTORS,
    SINGLE_LABEL_LR,
    THRESHOLD_MODES,
    TOKENIZER_KINDS,
    TRUNCATIONS,
    ModelConfig,
    PretrainConfig,
    TokenizerConfig,
    TrainConfig,
    parse_char_ngrams,
    parse_shares,
)
from grutext.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
_T = TrainConfig()
_M = ModelConfig()
_K = TokenizerConfig()
_P = PretrainConfig()


OPTIONS: dict[str, Callable[[Any], Any]] = {}  # each option by its long flag, so commands can share them


def _option(*decls: str, **attrs: Any) -> Callable[[Any], Any]:
    """click.option, remembered under its first long flag."""
    option = click.option(*decls, **attrs)
    flag = next(d for d in decls if d.startswith("--")).split("/")[0]
    OPTIONS.setdefault(flag, option)
    return option


def apply(*groups: Sequence[Callable[[F], F]]) -> Callable[[F], F]:
    """All the options of `groups`, shown in --help in the order given."""

    def decorate(func: F) -> F:
        for option in reversed([o for group in groups for o in group]):
            func = option(func)
        return func

    return decorate


def _checked(parse: Callable[[str], object], field: str) -> Callable[[Any, Any, str | None], str | None]:
    """A click callback that checks a value with config's own parser as it is parsed, so a malformed value is a
    usage error (exit 2) rather than a config error later."""

    def callback(ctx: Any, param: Any, value: str | None) -> str | None:
        try:
            if value is not None:
                parse(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc).removeprefix(f"{field} ")) from None
        return value

    return callback


RUN: list[Callable[[Any], Any]] = [
    _option(
        "--epochs",
        type=click.IntRange(min=1),
        default=_T.epochs,
        show_default=f"{DEFAULT_EPOCHS}, more on small data (--min-steps)",
        help="Most epochs to train.",
    ),
    _option(
        "--min-steps",
        type=click.IntRange(min=1),
        default=_T.min_steps,
        show_default=f"{DEFAULT_MIN_STEPS} unless --epochs is given",
        help="At least this many optimizer steps: on small data the epochs, and the patience in proportion, are "
        "raised to reach them, and early stopping waits for them.",
    ),
    _option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=_T.batch_size,
        show_default=True,
        help="Texts per training batch.",
    ),
    _option(
        "--lr",
        type=click.FloatRange(min=0, min_open=True, max=10),
        default=None,
        show_default=f"{SINGLE_LABEL_LR:g}; {MULTI_LABEL_LR:g} for multi-label data",
        help="Peak learning rate of AdamW.",
    ),
    _option(
        "--weight-decay",
        type=click.FloatRange(min=0, max=10),
        default=_T.weight_decay,
        show_default=True,
        help="AdamW weight decay.",
    ),
    _option(
        "--warmup",
        type=click.FloatRange(min=0, max=0.9),
        default=_T.warmup,
        show_default=True,
        help="Fraction of the planned steps spent warming up the learning rate.",
    ),
    _option(
        "--grad-clip",
        type=click.FloatRange(min=0, min_open=True),
        default=_T.grad_clip,
        show_default=True,
        help="Clip the gradient norm to this value.",
    ),
    _option(
        "--patience",
        type=click.IntRange(min=0),
        default=_T.patience,
        show_default=True,
        help="Stop after this many epochs without a better validation score.",
    ),
    _option(
        "--val-fraction",
        type=click.FloatRange(min=0, max=0.5, min_open=True),
        default=_T.val_fraction,
        show_default=True,
        help="Share of train set aside for validation when there is no validation split.",
    ),
    _option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps (smoke runs)."),
    _option(
        "--seed",
        type=click.IntRange(min=0, max=2**32 - 1),
        default=_T.seed,
        show_default=True,
        help="Seed for weights, data order and the validation carve-out.",
    ),
    _option(
        "--device",
        type=click.Choice(DEVICES),
        default=_T.device,
        show_default=True,
        help="Where to train: auto picks cuda, then mps, then cpu.",
    ),
]

TOKENIZER: list[Callable[[Any], Any]] = [
    _option(
        "--tokenizer",
        type=click.Choice(TOKENIZER_KINDS),
        default=_K.kind,
        show_default=True,
        help="Tokenizer model trained on the training texts.",
    ),
    _option(
        "--vocab-size",
        type=click.IntRange(min=10),
        default=_K.vocab_size,
        show_default=True,
        help="Largest vocabulary the tokenizer may learn.",
    ),
    _option(
        "--max-length",
        type=click.IntRange(min=1),
        default=_K.max_length,
        show_default=True,
        help="Tokens kept per text.",
    ),
    _option(
        "--truncation",
        type=click.Choice(TRUNCATIONS),
        default=_K.truncation,
        show_default=True,
        help="Which tokens of a long text to keep: the head, or head and tail.",
    ),
    _option("--lowercase/--no-lowercase", default=_K.lowercase, show_default=True, help="Lowercase texts."),
]

ENCODER: list[Callable[[Any], Any]] = [
    _option(
        "--embed-dim",
        type=click.IntRange(min=1, max=MAX_DIM),
        default=None,
        show_default="128; with --vectors, the file's dimension",
        help="Token embedding size.",
    ),
    _option(
        "--hidden-size",
        type=click.IntRange(min=1, max=MAX_DIM),
        default=_M.hidden_size,
        show_default=True,
        help="GRU hidden size (per direction).",
    ),
    _option(
        "--layers",
        type=click.IntRange(min=1, max=MAX_LAYERS),
        default=_M.layers,
        show_default=True,
        help="Stacked GRU layers.",
    ),
    _option(
        "--bidirectional/--no-bidirectional",
        default=_M.bidirectional,
        show_default=True,
        help="Run a second GRU right to left.",
    ),
    _option(
        "--dropout",
        type=click.FloatRange(min=0, max=0.95),
        default=_M.dropout,
        show_default=True,
        help="Dropout on embeddings, between layers and before the classifier.",
    ),
]

CLASSIFIER: list[Callable[[Any], Any]] = [
    _option(
        "--pooling",
        type=click.Choice(POOLINGS),
        default=_M.pooling,
        show_default=True,
        help="How GRU states become one vector: last state, mean or max over time, or max and mean side by side.",
    ),
    _option(
        "--embedding-skip/--no-embedding-skip",
        default=_M.embedding_skip,
        show_default=True,
        help="Also pool the word embeddings beside the GRU states (a bag-of-words path, as in RCNN).",
    ),
    _option(
        "--bigrams",
        "bigram_buckets",
        type=click.IntRange(min=0, max=MAX_VOCAB),
        default=_M.bigram_buckets,
        show_default=f"{DEFAULT_BIGRAM_BUCKETS} for single-label data, 0 for multi-label",
        help="A fastText-style head over the words and their hashed word bigrams, with this many buckets (0: none). "
        "It is trained by its own loss; its logits are averaged with the GRU's.",
    ),
    _option(
        "--char-ngrams",
        "char_ngrams",
        metavar="MIN-MAX",
        default=_M.char_ngrams,
        callback=_checked(parse_char_ngrams, "model.char_ngrams"),
        show_default=DEFAULT_CHAR_NGRAMS
        if DEFAULT_CHAR_NGRAMS == "0"
        else f"{DEFAULT_CHAR_NGRAMS} with the bigram head and the word tokenizer, else 0",
        help="The bigram head also reads the character n-grams of each word, MIN to MAX characters long, hashed into "
        "its buckets (as fastText's -minn/-maxn), so words never seen in training still count. 0: none.",
    ),
    _option(
        "--cell",
        type=click.Choice(CELLS),
        default=_M.cell,
        show_default=True,
        help="Recurrent cell: gru (PyTorch's GRU, cuDNN on a GPU: reset gate after the recurrent matmul), cho2014 "
        "(the GRU as Cho et al. 2014 write it: reset gate before it), lstm (for comparison).",
    ),
    _option(
        "--class-weight",
        default=_T.class_weight,
        show_default=True,
        help="Loss weights for imbalanced data: none, balanced (inverse frequency; positive weights for "
        "multi-label), or a JSON file mapping label -> weight.",
    ),
    _option(
        "--early-stop-metric",
        type=click.Choice(EARLY_STOP_METRICS),
        default=_T.early_stop_metric,
        show_default=True,
        help="Validation metric that picks the epoch: auto is macro_f1 for imbalanced or multi-label data, else "
        "accuracy.",
    ),
    _option(
        "--thresholds",
        type=click.Choice(THRESHOLD_MODES),
        default=_T.thresholds,
        show_default=True,
        help="Multi-label: tune one decision threshold on validation data, or one per label.",
    ),
    _option(
        "--backend",
        type=click.Choice(BACKENDS),
        default="auto",
        show_default=True,
        help="auto: the fast CPU path where it runs (the reference on a GPU and under torchrun); reference: the "
        "readable PyTorch implementation everywhere (same model, slower on the CPU).",
    ),
    _option(
        "--vectors",
        type=click.Path(path_type=str),
        default=None,
        help="Pretrained word vectors to start the embedding table from: GloVe or word2vec/fastText .vec text, "
        "or word2vec binary, optionally gzipped. Stored in the checkpoint; predict never needs the file.",
    ),
    _option(
        "--vectors-std",
        type=click.FloatRange(min=0.0, max=100.0),
        default=_T.vectors_std,
        show_default=True,
        help="With --vectors: rescale the table to this standard deviation (0 keeps the file's scale).",
    ),
    _option(
        "--word-dropout",
        type=click.FloatRange(min=0.0, max=0.9),
        default=None,
        help="Share of training tokens hidden behind [UNK] at each step [default: 0.1; multi-label 0].",
    ),
    _option(
        "--label-smoothing",
        type=click.FloatRange(min=0.0, max=0.5),
        default=_T.label_smoothing,
        show_default=True,
        help="Single-label: smooth the training targets by this much.",
    ),
]

STREAMING: list[Callable[[Any], Any]] = [
    _option(
        "--streaming",
        is_flag=True,
        help="Read the data as a stream, never all of it in memory (local jsonl/csv/tsv/parquet/.txt, gzipped too, "
        "or a hub id).",
    ),
    _option("--labels", help="Streaming: the label set, comma-separated (else one pass over the label column)."),
    _option(
        "--tokenizer-sample",
        type=click.IntRange(min=1),
        default=_T.tokenizer_sample,
        show_default=True,
        help="Streaming: the tokenizer learns from the first N training texts.",
    ),
    _option(
        "--shuffle-buffer",
        type=click.IntRange(min=1),
        default=_T.shuffle_buffer,
        show_default=True,
        help="Streaming: texts shuffled together before batching.",
    ),
    _option(
        "--steps-per-epoch",
        type=click.IntRange(min=1),
        default=None,
        help="Streaming: an epoch is N steps, not a pass.",
    ),
    _option(
        "--max-validation",
        type=click.IntRange(min=1),
        default=_T.max_validation,
        show_default=True,
        help="Streaming: validation texts held in memory.",
    ),
]
START: list[Callable[[Any], Any]] = [
    _option(
        "--init-from",
        type=click.Path(path_type=str),
        default=None,
        help="Start from a checkpoint: a language model (grutext pretrain) gives its tokenizer, word table and "
        "encoder; a classifier goes on training on this data (its labels keep their rows, new ones are added).",
    ),
    _option(
        "--unlabeled",
        multiple=True,
        metavar="TEXTS",
        help="Unlabelled texts (files, folders or hub ids, as pretrain reads them; repeat the flag for more): "
        "pretrain a language model on them and the training texts first, then train from it.",
    ),
    _option(
        "--freeze-steps",
        type=click.IntRange(min=0),
        default=_T.freeze_steps,
        show_default=True,
        help="With --init-from or --unlabeled: for this many first steps only the heads learn; the pretrained "
        "word table and encoder stay as they came.",
    ),
    _option(
        "--self-training",
        type=click.IntRange(min=0, max=100),
        default=_T.self_training,
        show_default=True,
        help="With --unlabeled: rounds of training again on the unlabelled texts the last round is surest of; the "
        "last round is kept unless an earlier one is better on validation by more than two standard errors.",
    ),
    _option(
        "--pseudo-share",
        metavar="SHARE[,SHARE...]",
        default=_T.pseudo_share,
        show_default=True,
        callback=_checked(parse_shares, "train.pseudo_share"),
        help="With --self-training: the share of the unlabelled texts a round adds, as many of each class; one "
        "share per round separated by commas (the last serves any later round).",
    ),
    _option(
        "--pretrain-minutes",
        type=click.FloatRange(min=0, min_open=True),
        default=_T.pretrain_minutes,
        show_default=True,
        help="With --unlabeled: the language model's training time at most.",
    ),
    _option(
        "--pretrain-epochs",
        type=click.IntRange(min=1),
        default=_T.pretrain_epochs,
        show_default=f"{PRETRAIN_EPOCHS}, or {PRETRAIN_EPOCHS_VECTORS} with --vectors",
        help="With --unlabeled: the language model's passes over its texts at most (--pretrain-minutes may end "
        "it first); from --vectors fewer, so that a small corpus does not wear the vectors away.",
    ),
]

# pretrain shares these with train (the same objects); its own optimisation defaults are PretrainConfig's
PRETRAIN_SHARED = [
    OPTIONS[flag]
    for flag in ("--tokenizer", "--vocab-size", "--lowercase", "--cell", "--seed", "--device", "--backend", "--vectors")
] + [OPTIONS[flag] for flag in ("--vectors-std", "--streaming", "--tokenizer-sample", "--shuffle-buffer")]
PRETRAIN: list[Callable[[Any], Any]] = [
    _option("--epochs", type=click.IntRange(min=1), default=_P.epochs, show_default=True, help="Most passes."),
    _option(
        "--max-minutes",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Stop after the step that passes this much training time (the epoch is then scored and kept).",
    ),
    _option(
        "--batch-size", type=click.IntRange(min=1), default=_P.batch_size, show_default=True, help="Windows per step."
    ),
    _option(
        "--lr",
        type=click.FloatRange(min=0, min_open=True, max=10),
        default=_P.lr,
        show_default=True,
        help="Peak learning rate of AdamW.",
    ),
    _option(
        "--weight-decay",
        type=click.FloatRange(min=0, max=10),
        default=_P.weight_decay,
        show_default=True,
        help="AdamW weight decay.",
    ),
    _option(
        "--warmup",
        type=click.FloatRange(min=0, max=0.9),
        default=_P.warmup,
        show_default=True,
        help="Fraction of the planned steps spent warming up the learning rate.",
    ),
    _option(
        "--grad-clip",
        type=click.FloatRange(min=0, min_open=True),
        default=_P.grad_clip,
        show_default=True,
        help="Clip the gradient norm to this value.",
    ),
    _option(
        "--patience",
        type=click.IntRange(min=0),
        default=_P.patience,
        show_default=True,
        help="Stop after this many passes without a better held-out perplexity.",
    ),
    _option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps."),
    _option(
        "--window",
        type=click.IntRange(min=2),
        default=_P.window,
        show_default=True,
        help="Tokens a training example reads at most; longer texts are cut into windows.",
    ),
    _option(
        "--samples",
        type=click.IntRange(min=1, max=MAX_VOCAB),
        default=_P.samples,
        show_default=True,
        help="Words the sampled softmax scores each target against at each step.",
    ),
    _option(
        "--held-out",
        type=click.FloatRange(min=0, max=0.5, min_open=True),
        default=_P.held_out,
        show_default=True,
        help="Share of the texts set aside to measure perplexity on.",
    ),
]
