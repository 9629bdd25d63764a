"""Pretrained word vectors as the embedding table's starting point (`grutext train --vectors FILE`).

The file is streamed (grutext.vectors) keeping only the rows the vocabulary needs. Each token is matched
exactly, then lowercased. For the word tokenizer, a training word below the frequency cut-off (seen once)
still earns a row when the file has it: that is where pretrained vectors help most, on words the labelled
data barely shows. For subword and char tokenizers every piece the file holds gets its row (a Chinese
character is a row of a Chinese word2vec file). Rows the file lacks start at the vectors' own scale.
The vectors end up inside the checkpoint's embedding: predict never needs the file. No torch here.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from grutext.config import MAX_VOCAB, TokenizerConfig
from grutext.errors import DataError
from grutext.tokenizer import PAD_ID, SPECIAL_TOKENS, add_words, capped, word_counts
from grutext.vectors import read_vectors


@dataclass
class Pretrained:
    tokenizer: Tokenizer  # the trained one, or (word tokenizer) with the file's rare training words added
    weights: npt.NDArray[np.float32]  # [vocab, dim], the embedding table's starting point
    found: npt.NDArray[np.bool_]  # [vocab], which rows came from the file
    summary: dict[str, Any]  # what config.json records: file, sha256, dimension, rows read, coverage

    def token_coverage(self, ids: Sequence[Sequence[int] | npt.NDArray[np.int32]]) -> float:
        """The share of these token ids whose row came from the file."""
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64)
        return round(float(self.found[flat].mean()), 4) if len(flat) else 0.0


def _lookup(vectors: dict[str, npt.NDArray[np.float32]]) -> dict[str, npt.NDArray[np.float32]]:
    """Each word's vector by its lowercased form too (the first casing in the file wins), for tokens the
    file only holds in another case."""
    lowered: dict[str, npt.NDArray[np.float32]] = {}
    for word, vector in vectors.items():
        lowered.setdefault(word.lower(), vector)
    return lowered


def pretrained_embeddings(
    path: str | Path,
    tokenizer: Tokenizer,
    cfg: TokenizerConfig,
    texts: Sequence[str],
    seed: int,
    expected_dim: int | None = None,
    std: float = 0.0,
) -> Pretrained:
    """Align the vector file at `path` with `tokenizer`'s vocabulary (grown by the file's rare training words
    for the word tokenizer), and return the starting table and the coverage figures."""
    vocab = tokenizer.get_vocab()
    wanted = {token for token in vocab if token not in SPECIAL_TOKENS}
    rare: set[str] = set()
    if cfg.kind == "word":  # every training word is a candidate, however rare
        rare = set(word_counts(tokenizer, capped(texts, cfg))) - wanted
    candidates = wanted | rare
    lowered = {word.lower() for word in candidates}

    def keep(word: str) -> bool:
        return word in candidates or word.lower() in lowered

    found = read_vectors(path, keep, expected_dim)
    by_lower = _lookup(found.vectors)

    def vector_of(token: str) -> npt.NDArray[np.float32] | None:
        exact = found.vectors.get(token)
        return exact if exact is not None else by_lower.get(token.lower())

    extra = sorted(word for word in rare if vector_of(word) is not None)
    room = MAX_VOCAB - len(vocab)
    if extra:
        tokenizer = add_words(tokenizer, extra[:room], cfg)
        vocab = tokenizer.get_vocab()
    rng = np.random.default_rng(seed)
    weights = rng.normal(found.mean, found.std, size=(len(vocab), found.dim)).astype(np.float32)
    weights[PAD_ID] = 0.0
    hit = np.zeros(len(vocab), dtype=bool)
    for token, index in vocab.items():
        if token in SPECIAL_TOKENS:
            continue
        vector = vector_of(token)
        if vector is not None:
            weights[index] = vector
            hit[index] = True
    if std and found.std > 0:  # the table at another scale, its geometry unchanged
        weights = ((weights - found.mean) * (std / found.std)).astype(np.float32)
        weights[PAD_ID] = 0.0
    rows = len(vocab) - len(SPECIAL_TOKENS)
    if not hit.any():
        raise DataError(
            f"{path}: none of the vocabulary's {rows} tokens is in this vector file ({found.rows_read} rows of "
            f"{found.dim} values); is it for another language, or another tokenizer (--tokenizer word matches "
            "whole words)?"
        )
    summary = {
        "file": Path(path).name,
        "sha256": found.sha256,
        "format": found.format,
        "dim": found.dim,
        "rows_read": found.rows_read,
        "rows_found": int(hit.sum()),
        "vocab_rows": rows,
        "rare_words_added": len(extra[:room]),
        "vocab_coverage": round(float(hit.sum()) / max(rows, 1), 4),
        "scale": {"mean": round(found.mean, 6), "std": round(found.std, 6)},
        "seconds": round(found.seconds, 2),
    }
    return Pretrained(tokenizer, weights, hit, summary)
