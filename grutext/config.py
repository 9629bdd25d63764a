"""Typed, validated settings. Each CLI flag maps to one field; the resolved values go into config.json.

Validation happens in `__post_init__`, so a config read back from a checkpoint is checked exactly like one
built from flags: sizes are bounded before any tensor is allocated.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from grutext.errors import ConfigError

FORMAT_VERSION = 2  # 2: config.json's `shape` section split from `model`; cells named gru/cho2014

TOKENIZER_KINDS = ("word", "wordpiece", "bpe", "unigram", "char")
TRUNCATIONS = ("head", "head_tail")
POOLINGS = ("last", "mean", "max", "maxmean")
CELLS = ("gru", "cho2014", "lstm")
LEGACY_CELLS = {"torch": "gru", "seed": "cho2014"}  # the names checkpoints of format 1 used
DEVICES = ("auto", "cpu", "cuda", "mps")
EARLY_STOP_METRICS = ("auto", "accuracy", "macro_f1", "micro_f1")
THRESHOLD_MODES = ("global", "per-label")
INPUT_FORMATS = ("auto", "text", "fasttext", "csv", "tsv", "jsonl", "parquet")  # how predict reads its inputs
ENGINES = ("auto", "onnx", "torch")  # what runs a model at predict time
BACKENDS = ("auto", "fast", "reference")  # what trains a model: the fast CPU path or the readable reference

# Upper bounds on sizes read from files, checked before anything is allocated.
MAX_VOCAB = 2_000_000
MAX_DIM = 8192
MAX_LAYERS = 16
MAX_LABELS = 100_000
MAX_LENGTH = 1_000_000


def _check_int(name: str, value: int, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")


def _check_float(name: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        bound = "(" if lo_open else "["
        raise ConfigError(f"{name} must be a number in {bound}{lo}, {hi}], got {value!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_optimisation(section: str, cfg: Any) -> None:
    """The optimisation settings a classifier's and a language model's run share."""
    _check_float(f"{section}.weight_decay", cfg.weight_decay, 0.0, 10.0)
    _check_float(f"{section}.warmup", cfg.warmup, 0.0, 0.9)
    _check_float(f"{section}.grad_clip", cfg.grad_clip, 0.0, 1e6, lo_open=True)
    _check_int(f"{section}.patience", cfg.patience, 0, 100_000)
    _check_int(f"{section}.seed", cfg.seed, 0, 2**32 - 1)
    if cfg.max_steps is not None:
        _check_int(f"{section}.max_steps", cfg.max_steps, 1, 10**9)


def _check_bool(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class TokenizerConfig:
    """How texts become token ids."""

    kind: str = "word"
    vocab_size: int = 30000
    lowercase: bool = True
    max_length: int = 512
    truncation: str = "head"  # "head": keep the first max_length tokens; "head_tail": keep both ends
    min_frequency: int = 2  # word tokenizer: how often a word must occur in training to get its own row

    def __post_init__(self) -> None:
        _check_choice("tokenizer.kind", self.kind, TOKENIZER_KINDS)
        _check_int("tokenizer.vocab_size", self.vocab_size, 10, MAX_VOCAB)
        _check_bool("tokenizer.lowercase", self.lowercase)
        _check_int("tokenizer.max_length", self.max_length, 1, MAX_LENGTH)
        _check_choice("tokenizer.truncation", self.truncation, TRUNCATIONS)
        _check_int("tokenizer.min_frequency", self.min_frequency, 1, 1_000_000)


@dataclass(frozen=True)
class ModelConfig:
    """The architecture the user chooses: embedding -> recurrent encoder -> pooling -> dropout -> linear."""

    embed_dim: int | None = None  # None: DEFAULT_EMBED_DIM, or the dimension of the pretrained vectors
    hidden_size: int = 128
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3
    pooling: str = "maxmean"
    cell: str = "gru"
    embedding_skip: bool = False  # also pool the embeddings themselves, beside the recurrent states
    # a fastText-style head over words and hashed word bigrams, this many buckets (0: none); None: the default,
    # DEFAULT_BIGRAM_BUCKETS for single-label data and none for multi-label (where it was not measured)
    bigram_buckets: int | None = None
    bigram_dim: int = 32  # the width of that head's table
    # that head also reads the hashed character n-grams of each word, "MIN-MAX" long (fastText's -minn/-maxn),
    # in the same buckets; "0": none. None: the default, DEFAULT_CHAR_NGRAMS where the head is on and the
    # tokenizer reads whole words (see `resolved_for`), else none.
    char_ngrams: str | None = None

    def __post_init__(self) -> None:
        if self.embed_dim is not None:
            _check_int("model.embed_dim", self.embed_dim, 1, MAX_DIM)
        _check_int("model.hidden_size", self.hidden_size, 1, MAX_DIM)
        _check_int("model.layers", self.layers, 1, MAX_LAYERS)
        _check_bool("model.bidirectional", self.bidirectional)
        _check_float("model.dropout", self.dropout, 0.0, 0.95)
        _check_choice("model.pooling", self.pooling, POOLINGS)
        _check_choice("model.cell", self.cell, CELLS)
        _check_bool("model.embedding_skip", self.embedding_skip)
        if self.bigram_buckets is not None:
            _check_int("model.bigram_buckets", self.bigram_buckets, 0, MAX_VOCAB)
        _check_int("model.bigram_dim", self.bigram_dim, 1, MAX_DIM)
        value: object = self.char_ngrams
        if isinstance(value, int) and not isinstance(value, bool):  # "--set char_ngrams=0" parses as a number
            object.__setattr__(self, "char_ngrams", str(value))
        if self.char_ngrams is not None:
            parse_char_ngrams(self.char_ngrams)

    @property
    def embedding_size(self) -> int:
        return DEFAULT_EMBED_DIM if self.embed_dim is None else self.embed_dim

    @property
    def resolved(self) -> bool:
        """Whether the defaults that depend on the data are settled (see `resolved_for`): what a model is built
        from, and what a checkpoint stores."""
        return self.bigram_buckets is not None and self.char_ngrams is not None

    @property
    def char_span(self) -> tuple[int, int] | None:
        """(shortest, longest) character n-gram the bigram head reads, or None for none (unresolved: none)."""
        return None if self.char_ngrams is None or not self.bigram_buckets else parse_char_ngrams(self.char_ngrams)

    def resolved_for(self, multi_label: bool, tokenizer_kind: str, streaming: bool = False) -> ModelConfig:
        """The bigram head and its character n-grams resolved for the data and the tokenizer. The n-grams are
        taken per word, so they need the word tokenizer (one token a word); streaming keeps each text's token
        ids only, so it reads none. An explicit choice those rule out is refused, not silently dropped. The bigram
        head is on by default for single-label data, where it raised validation accuracy on all nine single-label
        benchmark sets (mean of three seeds, docs/experiments.md), and off for multi-label data. This is the one
        place these defaults are decided; the model, the exporter and the engines read what it settled."""
        cfg = self
        if cfg.bigram_buckets is None:
            cfg = dataclasses.replace(cfg, bigram_buckets=0 if multi_label else DEFAULT_BIGRAM_BUCKETS)
        if cfg.char_ngrams is None:
            on = cfg.bigram_buckets and tokenizer_kind == "word" and not streaming
            return dataclasses.replace(cfg, char_ngrams=DEFAULT_CHAR_NGRAMS if on else "0")
        if parse_char_ngrams(cfg.char_ngrams) is not None:
            if not cfg.bigram_buckets:
                raise ConfigError("--char-ngrams needs the bigram head, which they feed: drop --bigrams 0")
            if tokenizer_kind != "word":
                raise ConfigError(
                    f"--char-ngrams needs --tokenizer word (they are taken per word), not {tokenizer_kind}"
                )
            if streaming:
                raise ConfigError("--char-ngrams cannot be used with --streaming (it keeps token ids only)")
        return cfg


def parse_char_ngrams(value: str) -> tuple[int, int] | None:
    """ "MIN-MAX" (or "N" for N-N) -> (MIN, MAX) with 1 <= MIN <= MAX <= MAX_CHAR_NGRAM; "0" -> None."""
    if value == "0":
        return None
    found = re.fullmatch(r"([1-9])(?:-([1-9]))?", value) if isinstance(value, str) else None
    if found is not None:
        low, high = int(found[1]), int(found[2] or found[1])
        if low <= high <= MAX_CHAR_NGRAM:
            return low, high
    raise ConfigError(
        f"model.char_ngrams must be MIN-MAX (1 <= MIN <= MAX <= {MAX_CHAR_NGRAM}, e.g. 2-4) or 0 for none, "
        f"got {value!r}"
    )


def parse_shares(value: str) -> tuple[float, ...]:
    """ "A,B,..." -> (A, B, ...), each share of the unlabelled texts in (0, 1]."""
    try:
        shares = tuple(float(part) for part in value.split(",")) if isinstance(value, str) else ()
    except ValueError:
        shares = ()
    if not shares or not all(math.isfinite(s) and 0 < s <= 1 for s in shares):
        raise ConfigError(
            f"train.pseudo_share must be a share in (0, 1], or one per round separated by commas (e.g. 0.2,0.4), "
            f"got {value!r}"
        )
    return shares


DEFAULT_EMBED_DIM = 128
DEFAULT_BIGRAM_BUCKETS = 50_000
# Raised mean validation accuracy over the single-label benchmark sets, three seeds (docs/experiments.md).
DEFAULT_CHAR_NGRAMS = "2-4"
MAX_CHAR_NGRAM = 9
BIGRAM_HASH = 1_000_003  # a prime: a bigram's bucket is (first id * BIGRAM_HASH + second id) mod buckets


@dataclass(frozen=True)
class DataShape:
    """What the data decides: the vocabulary the tokenizer learned and the label set."""

    vocab_size: int
    num_labels: int
    multi_label: bool = False

    def __post_init__(self) -> None:
        _check_int("shape.vocab_size", self.vocab_size, 2, MAX_VOCAB)
        _check_int("shape.num_labels", self.num_labels, 1, MAX_LABELS)
        _check_bool("shape.multi_label", self.multi_label)


# Texts per inference batch on the CPU. Smaller batches keep a step's buffers in cache: predict over sst2
# sentences took 17.4 s at 128 against 20.6 s at 256 and 22.5 s at 512 (bbc articles: 4.2 s against 4.6 s).
INFER_BATCH_SIZE = 128

# Measured at seed 13 (bench/sweep.py --grid lr=0.002,0.004): bbc 0.946 -> 0.964, sst2 0.847 -> 0.850, and
# one epoch of sst2 at 128/128, one direction 0.793 -> 0.807; see the README's "How the defaults were chosen".
SINGLE_LABEL_LR = 4e-3
# --unlabeled's language model: 30 passes against 10, on development texts (500 labels, three draws, rounds at
# 0.2,0.4): sst2 0.700 -> 0.710, thucnews 0.723 -> 0.737, chnsenticorp 0.816 -> 0.808 (mean 0.746 -> 0.752); but from
# --vectors, sst2 0.758 -> 0.736: on a small corpus the longer run wears the vectors away. imdb's reviews end at
# --pretrain-minutes first (3.3 passes). docs/experiments.md
PRETRAIN_EPOCHS = 30
PRETRAIN_EPOCHS_VECTORS = 10
# Measured on reuters21578 (90 labels, most of them rare), micro/macro-F1: 2e-3 0.797/0.387 (at commit 66d1a10),
# then at commit f457a94: 4e-3 0.839/0.444, 6e-3 0.845/0.430, 8e-3 0.864/0.447 (validation micro-F1 0.875,
# the best). One sigmoid per label learns more slowly than a softmax.
MULTI_LABEL_LR = 8e-3
# Word dropout 0.1 with label smoothing 0.1 (the TrainConfig default), against neither, 3 seeds each on eight
# single-label sets (bench/sweep.py; docs/experiments.md): mean validation accuracy +0.55 points, better on six.
SINGLE_LABEL_WORD_DROPOUT = 0.1
DEFAULT_EPOCHS = 15
# Measured on sst2 and imdb at 500 labels, three draws each (bench/few_labels.py; docs/experiments.md): mean
# validation 0.693 and 0.840 against 0.613 and 0.713 at 15 epochs (600: 0.687 on sst2; 3,000: 0.700 for twice the
# time); full-size sets make more steps than this already, but for bbc (57 steps an epoch), which it took to 27
# and 17 epochs at seeds 13 and 14 (validation 0.995 and 0.985 against 0.995 and 0.980). Early stopping waits for
# it too (loop.Plan.min_steps): on development texts at 500 labels, three draws, the defaults rose by 0.7 points
# (four sets) and --unlabeled by 1.2 (three sets; chnsenticorp 0.775 -> 0.810), and no set lost (docs/experiments.md).
DEFAULT_MIN_STEPS = 1500


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and data-handling settings; none of them is needed to run a trained model."""

    epochs: int | None = None  # None: DEFAULT_EPOCHS, raised on small data to reach DEFAULT_MIN_STEPS
    # At least this many optimizer steps, the epochs (and patience, in proportion) raised to reach them; None:
    # DEFAULT_MIN_STEPS where the epochs are left to their default, else none (asked-for epochs are kept).
    min_steps: int | None = None
    batch_size: int = 32
    lr: float | None = None  # None: SINGLE_LABEL_LR, or MULTI_LABEL_LR for multi-label data
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of the planned steps spent warming up the learning rate
    grad_clip: float = 1.0
    patience: int = 3
    seed: int = 13
    max_steps: int | None = None
    val_fraction: float = 0.1
    device: str = "auto"
    class_weight: str = "none"  # none, balanced, or a JSON file mapping label -> weight
    early_stop_metric: str = "auto"  # auto: macro_f1 for imbalanced or multi-label data, else accuracy
    thresholds: str = "global"  # multi-label: one tuned threshold, or one per label
    vectors: str | None = None  # a pretrained word-vector file the embedding table starts from
    vectors_std: float = 1.0  # rescale the vectors to this standard deviation (0: as the file has them)
    word_dropout: float | None = None  # share of training tokens hidden behind [UNK] (None: the task's default)
    label_smoothing: float = 0.1  # single-label: cross-entropy against targets smoothed by this much
    backend: str = "auto"  # auto: the fast CPU path where it runs; reference: the readable one everywhere
    streaming: bool = False  # read the data as a stream, never all of it in memory
    labels: str | None = None  # streaming: the label set, comma-separated (else one pass over the labels)
    tokenizer_sample: int = 100_000  # streaming: texts the tokenizer learns from (the first ones)
    shuffle_buffer: int = 16_384  # streaming: texts shuffled together
    steps_per_epoch: int | None = None  # streaming: an epoch is this many steps, not a pass
    max_validation: int = 20_000  # streaming: validation texts held in memory
    init_from: str | None = None  # a language model (grutext pretrain) or a classifier checkpoint to start from
    unlabeled: list[str] | None = None  # unlabelled texts to pretrain a language model on first (with train's)
    pretrain_minutes: float = 20.0  # --unlabeled: the language model's training time at most
    # --unlabeled: the language model's passes over its texts at most; None: PRETRAIN_EPOCHS, or
    # PRETRAIN_EPOCHS_VECTORS when --vectors start its word table (resolved_pretrain_epochs)
    pretrain_epochs: int | None = None
    freeze_steps: int = 0  # a pretrained start: steps during which the word table and encoder stay as they came
    # --unlabeled: rounds of training again on what the last round labels of the texts (validation rose with each
    # of two rounds: sst2 500 labels, mean of three draws 0.733 -> 0.760 -> 0.767; imdb 0.80 -> 0.82 -> 0.84)
    self_training: int = 2
    # --unlabeled: the share of the unlabelled texts each round adds (the surest ones), "A,B,...": round 1 adds A,
    # round 2 B, and the last share serves any later round (parse_shares). A number is one share for every round.
    # A round 2 that adds 0.4, labelled by round 1, against one adding 0.2, on development texts (500 labels, three
    # draws): chnsenticorp 0.810 -> 0.816, sst2 0.696 -> 0.700, thucnews 0.717 -> 0.723, imdb 0.829 -> 0.828; the
    # four sets' mean 0.763 -> 0.767 (docs/experiments.md).
    pseudo_share: str = "0.2,0.4"

    def resolved_lr(self, multi_label: bool) -> float:
        """The peak learning rate: --lr, or the default for the kind of task."""
        if self.lr is not None:
            return self.lr
        return MULTI_LABEL_LR if multi_label else SINGLE_LABEL_LR

    def resolved_pretrain_epochs(self) -> int:
        """--unlabeled's language model's passes at most: --pretrain-epochs, or the default for its start."""
        if self.pretrain_epochs is not None:
            return self.pretrain_epochs
        return PRETRAIN_EPOCHS_VECTORS if self.vectors else PRETRAIN_EPOCHS

    def resolved_min_steps(self) -> int:
        """--min-steps, or DEFAULT_MIN_STEPS where the epochs are left to their default; 0 where --epochs was given
        alone. Early stopping stops nothing before it (loop.Plan.min_steps)."""
        if self.min_steps is not None:
            return self.min_steps
        return DEFAULT_MIN_STEPS if self.epochs is None else 0

    def resolved_schedule(self, steps_per_epoch: int) -> tuple[int, int]:
        """(epochs, patience) for epochs of this many steps: raised to reach the minimum of steps, patience in
        proportion (3 of 15 epochs stays a fifth of the run), so that a 50-text validation split cannot stop a
        short run early. A set of 450 texts makes 15 steps an epoch; 15 epochs of them barely trained (sst2 at
        500 labels: 0.55-0.58 on test; with 1,500 steps 0.61-0.65, and imdb 0.61 -> 0.79; docs/experiments.md)."""
        epochs = DEFAULT_EPOCHS if self.epochs is None else self.epochs
        minimum = self.resolved_min_steps()
        if epochs * steps_per_epoch >= minimum:
            return epochs, self.patience
        raised = -(-minimum // max(steps_per_epoch, 1))
        return raised, -(-self.patience * raised // epochs)

    def resolved_word_dropout(self, multi_label: bool) -> float:
        """--word-dropout, or the default: SINGLE_LABEL_WORD_DROPOUT, and none for multi-label data (where it
        was not measured)."""
        if self.word_dropout is not None:
            return self.word_dropout
        return 0.0 if multi_label else SINGLE_LABEL_WORD_DROPOUT

    def __post_init__(self) -> None:
        if self.epochs is not None:
            _check_int("train.epochs", self.epochs, 1, 100_000)
        if self.min_steps is not None:
            _check_int("train.min_steps", self.min_steps, 1, 10**9)
        _check_int("train.batch_size", self.batch_size, 1, 1_000_000)
        if self.lr is not None:
            _check_float("train.lr", self.lr, 0.0, 10.0, lo_open=True)
        _check_optimisation("train", self)
        _check_float("train.val_fraction", self.val_fraction, 0.0, 0.5, lo_open=True)
        _check_choice("train.device", self.device, DEVICES)
        if not isinstance(self.class_weight, str) or not self.class_weight:
            raise ConfigError(f"train.class_weight must be none, balanced or a file, got {self.class_weight!r}")
        _check_choice("train.early_stop_metric", self.early_stop_metric, EARLY_STOP_METRICS)
        _check_choice("train.thresholds", self.thresholds, THRESHOLD_MODES)
        if self.vectors is not None and (not isinstance(self.vectors, str) or not self.vectors):
            raise ConfigError(f"train.vectors must be a file path, got {self.vectors!r}")
        _check_float("train.vectors_std", self.vectors_std, 0.0, 100.0)
        if self.word_dropout is not None:
            _check_float("train.word_dropout", self.word_dropout, 0.0, 0.9)
        _check_float("train.label_smoothing", self.label_smoothing, 0.0, 0.5)
        _check_choice("train.backend", self.backend, BACKENDS)
        _check_bool("train.streaming", self.streaming)
        if self.labels is not None and (not isinstance(self.labels, str) or not self.labels.strip(",")):
            raise ConfigError(f"train.labels must be comma-separated label names, got {self.labels!r}")
        _check_int("train.tokenizer_sample", self.tokenizer_sample, 1, 10**9)
        _check_int("train.shuffle_buffer", self.shuffle_buffer, 1, 10**8)
        if self.steps_per_epoch is not None:
            _check_int("train.steps_per_epoch", self.steps_per_epoch, 1, 10**9)
        _check_int("train.max_validation", self.max_validation, 1, 10**8)
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise ConfigError(f"train.init_from must be a checkpoint directory, got {self.init_from!r}")
        if self.unlabeled is not None:
            given: object = self.unlabeled
            if not isinstance(given, (list, tuple)) or not all(isinstance(u, str) and u for u in given):
                raise ConfigError(f"train.unlabeled must be a list of files, folders or hub ids, got {given!r}")
            object.__setattr__(self, "unlabeled", list(self.unlabeled) or None)
            if self.init_from is not None and self.unlabeled:
                raise ConfigError("--unlabeled pretrains the model --init-from would start from: pass one of them")
        _check_float("train.pretrain_minutes", self.pretrain_minutes, 0.0, 1e6, lo_open=True)
        if self.pretrain_epochs is not None:
            _check_int("train.pretrain_epochs", self.pretrain_epochs, 1, 10**6)
        _check_int("train.freeze_steps", self.freeze_steps, 0, 10**9)
        _check_int("train.self_training", self.self_training, 0, 100)
        share: object = self.pseudo_share
        if isinstance(share, (int, float)) and not isinstance(share, bool):  # grutext.train(pseudo_share=0.5)
            object.__setattr__(self, "pseudo_share", format(share, "g"))
        parse_shares(self.pseudo_share)

    def round_share(self, number: int) -> float:
        """The share of the unlabelled texts self-training round `number` (1, 2, ...) adds."""
        shares = parse_shares(self.pseudo_share)
        return shares[min(number, len(shares)) - 1]


@dataclass(frozen=True)
class PretrainConfig:
    """How `grutext pretrain` trains a language model on unlabelled text (see grutext.lm)."""

    epochs: int = 10  # most passes over the corpus
    batch_size: int = 32  # windows per step
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: float = 0.02
    grad_clip: float = 1.0
    patience: int = 2  # passes in a row without a better held-out perplexity
    seed: int = 13
    max_steps: int | None = None
    max_minutes: float | None = None  # stop after the step that passes this much training time
    device: str = "auto"
    backend: str = "auto"
    window: int = 128  # tokens a training example reads at most (longer texts are cut into windows)
    samples: int = 512  # words each step's sampled softmax scores every target against
    held_out: float = 0.02  # share of the texts set aside (by a hash of each text) to measure perplexity on
    max_held_out: int = 2000  # held-out texts at most
    vectors: str | None = None  # a pretrained word-vector file the embedding table starts from
    vectors_std: float = 1.0
    streaming: bool = False  # read the corpus pass after pass, never all of it in memory
    tokenizer_sample: int = 100_000  # streaming: the tokenizer learns from the first texts
    shuffle_buffer: int = 16_384  # streaming: windows shuffled together

    def __post_init__(self) -> None:
        _check_int("pretrain.epochs", self.epochs, 1, 100_000)
        _check_bool("pretrain.streaming", self.streaming)
        _check_int("pretrain.tokenizer_sample", self.tokenizer_sample, 1, 10**9)
        _check_int("pretrain.shuffle_buffer", self.shuffle_buffer, 1, 10**8)
        _check_int("pretrain.batch_size", self.batch_size, 1, 1_000_000)
        _check_float("pretrain.lr", self.lr, 0.0, 10.0, lo_open=True)
        _check_optimisation("pretrain", self)
        if self.max_minutes is not None:
            _check_float("pretrain.max_minutes", self.max_minutes, 0.0, 1e6, lo_open=True)
        _check_choice("pretrain.device", self.device, DEVICES)
        _check_choice("pretrain.backend", self.backend, BACKENDS)
        _check_int("pretrain.window", self.window, 2, MAX_LENGTH)
        _check_int("pretrain.samples", self.samples, 1, MAX_VOCAB)
        _check_float("pretrain.held_out", self.held_out, 0.0, 0.5, lo_open=True)
        _check_int("pretrain.max_held_out", self.max_held_out, 1, 10**8)
        if self.vectors is not None and (not isinstance(self.vectors, str) or not self.vectors):
            raise ConfigError(f"pretrain.vectors must be a file path, got {self.vectors!r}")
        _check_float("pretrain.vectors_std", self.vectors_std, 0.0, 100.0)


T = TypeVar("T")


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(obj)


def from_dict(cls: type[T], data: object, where: str) -> T:
    """Build a config dataclass from JSON data, refusing unknown keys so a typo or tampering is loud."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}")
    try:
        return cls(**data)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
