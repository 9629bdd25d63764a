"""Build, train and apply a `tokenizers.Tokenizer`. No torch here.

Every kind shares one front end, so English and Chinese go through the same path:
NFKC (full-width forms fold to ASCII) -> BERT's cleaning (control characters dropped, whitespace unified,
a space put around every CJK ideograph so Chinese needs no word segmentation) -> optional lowercasing ->
split on whitespace and punctuation. The subword model then works inside those pieces.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from grutext.config import TokenizerConfig

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1
SPECIAL_TOKENS = [PAD, UNK]
# Cap on characters looked at per text, so a 10 MB line costs no more than a long document. Tokens
# are at least one character, usually several, so 100 characters per kept token never cuts a kept token
# short in practice.
CHARS_PER_TOKEN_CAP = 100


def _front_end(tokenizer: Tokenizer, cfg: TokenizerConfig) -> None:
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=cfg.lowercase
            ),
        ]
    )
    pieces: list[pre_tokenizers.PreTokenizer] = [
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Punctuation(),
    ]
    if cfg.kind == "char":
        pieces.append(pre_tokenizers.Split(Regex("."), behavior="isolated"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(pieces)


def build_untrained(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    """An empty tokenizer of the configured kind, with the trainer that fills its vocabulary."""
    common: dict[str, Any] = {"vocab_size": cfg.vocab_size, "special_tokens": SPECIAL_TOKENS, "show_progress": False}
    tokenizer: Tokenizer
    trainer: trainers.Trainer
    if cfg.kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK, max_input_chars_per_word=100))
        trainer = trainers.WordPieceTrainer(min_frequency=2, continuing_subword_prefix="##", **common)
    elif cfg.kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK, continuing_subword_prefix="##"))
        trainer = trainers.BpeTrainer(min_frequency=2, continuing_subword_prefix="##", **common)
    elif cfg.kind == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(unk_token=UNK, **common)
    else:  # word and char: one id per whole piece
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(min_frequency=1 if cfg.kind == "char" else 2, **common)
    _front_end(tokenizer, cfg)
    return tokenizer, trainer


def train_tokenizer(texts: Sequence[str], cfg: TokenizerConfig) -> Tokenizer:
    """Learn a vocabulary from the training texts; truncation goes into tokenizer.json for head truncation."""
    tokenizer, trainer = build_untrained(cfg)
    tokenizer.train_from_iterator(_capped(texts, cfg), trainer=trainer, length=len(texts))
    tokenizer = canonical_ids(tokenizer)
    if tokenizer.token_to_id(PAD) != PAD_ID or tokenizer.token_to_id(UNK) != UNK_ID:
        raise AssertionError("special tokens must take ids 0 and 1")
    configure_truncation(tokenizer, cfg)
    return tokenizer


def canonical_ids(tokenizer: Tokenizer) -> Tokenizer:
    """Renumber the vocabulary in a fixed order (special tokens, then by score or text).

    The `tokenizers` trainers iterate Rust hash maps, so the same texts give the same tokens under
    different ids from run to run; with ids in a fixed order, the seed fixes each token's initial embedding.
    """
    data = json.loads(tokenizer.to_str())
    model = data["model"]
    if model["type"] == "Unigram":
        rest = sorted((p for p in model["vocab"] if p[0] not in SPECIAL_TOKENS), key=lambda p: (-p[1], p[0]))
        scores = {p[0]: p[1] for p in model["vocab"]}
        model["vocab"] = [[tok, scores[tok]] for tok in SPECIAL_TOKENS] + rest
        model["unk_id"] = UNK_ID
    else:
        rest = sorted(tok for tok in model["vocab"] if tok not in SPECIAL_TOKENS)
        model["vocab"] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + rest)}
    for added in data.get("added_tokens", []):
        added["id"] = SPECIAL_TOKENS.index(added["content"])
    return Tokenizer.from_str(json.dumps(data))


def configure_truncation(tokenizer: Tokenizer, cfg: TokenizerConfig) -> None:
    """Head truncation lives in the tokenizer; head+tail is applied in `encode`, so the tokenizer keeps all."""
    tokenizer.no_padding()
    if cfg.truncation == "head":
        tokenizer.enable_truncation(cfg.max_length)
    else:
        tokenizer.no_truncation()


def _cap(text: str, cfg: TokenizerConfig) -> str:
    cap = CHARS_PER_TOKEN_CAP * cfg.max_length
    if len(text) <= cap:
        return text
    if cfg.truncation == "head":
        return text[:cap]
    return text[: cap // 2] + " " + text[-(cap // 2) :]


def _capped(texts: Iterable[str], cfg: TokenizerConfig) -> Iterable[str]:
    return (_cap(t, cfg) for t in texts)


def encode(tokenizer: Tokenizer, texts: Sequence[str], cfg: TokenizerConfig) -> list[list[int]]:
    """Token ids per text, at most max_length each; an empty text gives an empty list."""
    encodings = tokenizer.encode_batch_fast([_cap(t, cfg) for t in texts], add_special_tokens=False)
    ids = [e.ids for e in encodings]
    if cfg.truncation == "head_tail":
        head = (cfg.max_length + 1) // 2
        tail = cfg.max_length - head
        ids = [row if len(row) <= cfg.max_length else row[:head] + row[len(row) - tail :] for row in ids]
    return ids
