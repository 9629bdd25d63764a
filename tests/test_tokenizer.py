"""The shared front end (NFKC, CJK split, lowercase), every tokenizer kind, truncation, determinism."""

from __future__ import annotations

import zlib

import pytest

from grutext.config import TOKENIZER_KINDS, TokenizerConfig
from grutext.tokenizer import (
    PAD_ID,
    UNK_ID,
    char_grams,
    encode,
    gram_bags,
    token_char_grams,
    train_tokenizer,
    truncated_fraction,
    word_counts,
)
from tests.conftest import sentiment_rows

TEXTS = [r["text"] for r in sentiment_rows(200)] + [r["text"] for r in sentiment_rows(200, chinese=True)]


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_every_kind_trains_and_encodes(kind: str) -> None:
    cfg = TokenizerConfig(kind=kind, vocab_size=300)
    tok = train_tokenizer(TEXTS, cfg)
    assert tok.token_to_id("[PAD]") == PAD_ID and tok.token_to_id("[UNK]") == UNK_ID
    assert tok.get_vocab_size() <= 300
    ids = encode(tok, ["The film was GREAT", "", "酒店很好"], cfg)
    assert ids[1] == []
    assert all(0 <= i < tok.get_vocab_size() for row in ids for i in row)
    assert len(ids[2]) >= 3  # Chinese splits without a segmenter


def test_front_end_nfkc_lowercase_and_cjk() -> None:
    tok = train_tokenizer(TEXTS, TokenizerConfig(kind="word", vocab_size=300))
    # Full-width letters fold to ASCII, case folds, every ideograph is its own piece.
    assert tok.encode("ＧＲＥＡＴ film").tokens == ["great", "film"]
    assert tok.encode("酒店很好 film").tokens == ["酒", "店", "很", "好", "film"]
    assert tok.encode("film,great").tokens == ["film", "[UNK]", "great"]  # punctuation splits words
    cased = train_tokenizer(TEXTS, TokenizerConfig(kind="word", vocab_size=300, lowercase=False))
    assert cased.encode("Great").tokens == ["[UNK]"]


def test_head_and_head_tail_truncation() -> None:
    texts = [" ".join(f"w{i}" for i in range(50))]
    head = TokenizerConfig(kind="word", vocab_size=100, max_length=10)
    tok = train_tokenizer(texts * 2, head)
    assert encode(tok, texts, head)[0] == [tok.token_to_id(f"w{i}") for i in range(10)]
    both = TokenizerConfig(kind="word", vocab_size=100, max_length=10, truncation="head_tail")
    tok = train_tokenizer(texts * 2, both)
    expected = [f"w{i}" for i in (*range(5), *range(45, 50))]
    assert encode(tok, texts, both)[0] == [tok.token_to_id(w) for w in expected]


@pytest.mark.parametrize("truncation", ["head", "head_tail"])
def test_truncated_fraction_sees_past_the_tokenizers_own_truncation(truncation: str) -> None:
    texts = [" ".join(f"w{i}" for i in range(n)) for n in (5, 10, 11, 50)]
    cfg = TokenizerConfig(kind="word", vocab_size=100, max_length=10, truncation=truncation)
    tok = train_tokenizer(texts * 2, cfg)
    assert truncated_fraction(tok, texts, cfg) == 0.5  # 11 and 50 words are longer than 10
    assert len(encode(tok, texts, cfg)[3]) == 10  # and the tokenizer still truncates afterwards


def test_huge_text_is_capped_before_tokenizing() -> None:
    cfg = TokenizerConfig(kind="word", vocab_size=100, max_length=8)
    tok = train_tokenizer(TEXTS, cfg)
    assert len(encode(tok, ["great " * 2_000_000], cfg)[0]) == 8


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_ids_are_in_a_fixed_order(kind: str) -> None:
    """The tokenizers trainers number tokens in hash-map order; we renumber so the same vocabulary always
    gets the same ids, and learn WordPiece/BPE merges ourselves so they are identical run to run."""
    cfg = TokenizerConfig(kind=kind, vocab_size=300)
    tok = train_tokenizer(TEXTS, cfg)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    assert tokens[:2] == ["[PAD]", "[UNK]"]
    if kind != "unigram":  # unigram is ordered by score
        assert tokens[2:] == sorted(tokens[2:])
    if kind != "unigram":  # unigram comes from the `tokenizers` trainer, whose ties are not repeatable
        assert tok.to_str() == train_tokenizer(TEXTS, cfg).to_str()


def test_learn_merges_by_hand() -> None:
    """Most frequent pair first, ties broken by text; pieces inside a word carry ##."""
    from collections import Counter

    from grutext.tokenizer import learn_merges

    alphabet, merges = learn_merges(Counter({"low": 5, "lower": 2, "newest": 6}), vocab_size=14)
    assert alphabet == sorted(["l", "##o", "##w", "##e", "##r", "n", "##s", "##t"])
    # ##w+##e occurs 2 (lower) + 6 (newest) = 8 times, then l+##o 7 times; then four pairs tie at 6
    # (##e+##we, ##s+##t, ##we+##s, n+##e) and the smallest text wins.
    assert merges[:3] == [("##w", "##e"), ("l", "##o"), ("##e", "##we")]
    assert len(alphabet) + len(merges) == 14


def test_subword_vocabularies_are_repeatable_on_real_sized_data() -> None:
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    texts = [" ".join(rng.choice(words) for _ in range(20)) for _ in range(500)]
    for kind in ("wordpiece", "bpe"):
        cfg = TokenizerConfig(kind=kind, vocab_size=800)
        first = train_tokenizer(texts, cfg)
        assert first.to_str() == train_tokenizer(texts, cfg).to_str()
        assert first.get_vocab_size() == 800
        assert UNK_ID not in first.encode("abcdefghij jihgfedcba").ids  # any word decomposes into pieces


@pytest.mark.parametrize("kind", ["word", "char"])
def test_vocabulary_counts_words_per_text_across_training_chunks(kind: str) -> None:
    """Training joins texts into chunks; a word at the end of one text must never merge with the next."""
    texts = [f"w{i % 700}" for i in range(2500)] + ["tail", "head", "x tail", "head y", "好", "酒店", "end.", "start"]
    cfg = TokenizerConfig(kind=kind, vocab_size=10_000)
    tok = train_tokenizer(texts, cfg)
    counts = word_counts(tok, texts if kind == "word" else [" ".join(t) for t in texts])
    expected = {w for w, c in counts.items() if c >= (2 if kind == "word" else 1)}
    assert set(tok.get_vocab()) - {"[PAD]", "[UNK]"} == expected
    assert "tailhead" not in tok.get_vocab() and "w699w0" not in tok.get_vocab()


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
@pytest.mark.parametrize("truncation", ["head", "head_tail"])
def test_joined_encoding_equals_one_text_at_a_time(kind: str, truncation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """encode() joins many texts around a special token; every text must come out as if encoded alone, at the
    chunk edges too, with empty, blank, CJK, full-width, truncated and separator-holding texts."""
    import grutext.tokenizer as tokenizer_module

    rows = sentiment_rows(300) + sentiment_rows(100, seed=1, chinese=True)
    texts = [r["text"] for r in rows] + ["", "   ", "ＡＢＣ！ fullwidth", "long " * 40, "end.", "好酒店"]
    cfg = TokenizerConfig(kind=kind, vocab_size=300, max_length=12, truncation=truncation)
    tok = train_tokenizer(texts, cfg)
    alone = [encode(tok, [text], cfg)[0] for text in texts]
    monkeypatch.setattr(tokenizer_module, "JOIN_MIN", 2)
    monkeypatch.setattr(tokenizer_module, "JOIN_CHUNK", 7)  # many chunk edges; 406 texts leave a short last chunk
    assert encode(tok, texts, cfg) == alone
    assert encode(tok, [*texts[:10], f"a {tokenizer_module.SEPARATOR} b", *texts[10:20]], cfg) == [
        *alone[:10],
        encode(tok, [f"a {tokenizer_module.SEPARATOR} b"], cfg)[0],
        *alone[10:20],
    ]


@pytest.mark.parametrize("truncation", ["head", "head_tail"])
def test_char_grams_are_each_word_s_fasttext_ngrams_one_list_a_token(truncation: str) -> None:
    cfg = TokenizerConfig(kind="word", vocab_size=300, max_length=5, truncation=truncation)
    tok = train_tokenizer(TEXTS, cfg)
    odd = ["", "Ｆｉｌｍ  superb!!", "房间很好，服务满意", "one two three four five six seven", "zzyzx\u3000qq"]
    texts = TEXTS[:50] + odd
    ids, per_token = encode(tok, texts, cfg), token_char_grams(tok, texts, cfg, (2, 3), 97)
    assert [len(row) for row in per_token] == [len(row) for row in ids]  # one list a kept token, unknown ones too
    size = tok.get_vocab_size()
    # "film" (NFKC, lowercased) is <film>: 2-grams <f fi il lm m>, 3-grams <fi fil ilm lm>
    grams = ["<f", "fi", "il", "lm", "m>", "<fi", "fil", "ilm", "lm>"]
    assert per_token[51][0] == [size + zlib.crc32(g.encode()) % 97 for g in grams]
    assert per_token[52][0] == [size + zlib.crc32(g.encode()) % 97 for g in ["<房", "房>", "<房>"]]
    flat = char_grams(tok, texts, cfg, (2, 3), 97)
    assert flat == [[g for word in row for g in word] for row in per_token]
    assert all(size <= g < size + 97 for row in flat for g in row)


@pytest.mark.parametrize("truncation", ["head", "head_tail"])
def test_gram_bags_hold_char_grams_of_every_text(monkeypatch: pytest.MonkeyPatch, truncation: str) -> None:
    """The array-code bags training and both engines read: each text's char_grams as distinct rows and counts,
    unknown words (their own characters), truncation, CJK and empty texts, across chunk edges."""
    import grutext.tokenizer as tokenizer_module

    monkeypatch.setattr(tokenizer_module, "GRAM_CHUNK", 7)
    cfg = TokenizerConfig(kind="word", vocab_size=300, max_length=5, truncation=truncation)
    tok = train_tokenizer(TEXTS, cfg)
    odd = ["", "Ｆｉｌｍ  superb!!", "房间很好，服务满意", "one two three four five six seven", "zzyzx\u3000qq qq"]
    odd += ["\ufb01ne wo\x07rd 龘龘 ÉCOLE", "a\u0301b !\u0301 xx\u200byy"]  # ligature, control, rare CJK, marks
    texts = TEXTS[:50] + odd
    ids = encode(tok, texts, cfg)
    assert any(UNK_ID in row for row in ids)
    bags = gram_bags(tok, texts, ids, cfg, (2, 3), 97)
    expected = char_grams(tok, texts, cfg, (2, 3), 97)
    assert len(bags) == len(texts)
    for k, row in enumerate(expected):
        assert sorted(bags[k].tolist()) == sorted(row), texts[k]
    rows, counts = bags.pad(range(len(texts)))
    for k, row in enumerate(expected):
        distinct = sorted(set(row))
        assert rows[k, : len(distinct)].tolist() == distinct
        assert counts[k, : len(distinct)].tolist() == [row.count(g) for g in distinct]
        assert counts[k, len(distinct) :].sum() == 0
