"""Build, train and apply a `tokenizers.Tokenizer`. No torch here.

Every kind shares one front end, so English and Chinese go through the same path:
NFKC (full-width forms fold to ASCII) -> BERT's cleaning (control characters dropped, whitespace unified,
a space put around every CJK ideograph so Chinese needs no word segmentation) -> optional lowercasing ->
split on whitespace and punctuation. The subword model then works inside those pieces.
"""

from __future__ import annotations

import heapq
import itertools
import json
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from grutext.config import ModelConfig, TokenizerConfig
from grutext.ragged import Bags, Rows

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


def _hf_trained(texts: Sequence[str], cfg: TokenizerConfig) -> Tokenizer:
    """Unigram, word and char vocabularies from the `tokenizers` trainers."""
    common: dict[str, Any] = {"vocab_size": cfg.vocab_size, "special_tokens": SPECIAL_TOKENS, "show_progress": False}
    tokenizer: Tokenizer
    trainer: trainers.Trainer
    if cfg.kind == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(unk_token=UNK, **common)
    else:  # word and char: one id per whole piece
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(min_frequency=1 if cfg.kind == "char" else cfg.min_frequency, **common)
    _front_end(tokenizer, cfg)
    tokenizer.train_from_iterator(_joined(capped(texts, cfg)), trainer=trainer)
    return tokenizer


TRAIN_CHUNK = 1024


def _joined(texts: Iterable[str]) -> Iterator[str]:
    """The texts, TRAIN_CHUNK at a time, joined by newlines. The trainers count pre-tokenized pieces, and no
    piece spans a newline, so the counts are those of the single texts; but Rust pulls a thousand times fewer
    Python strings through the GIL (sst2's 67k sentences: 0.99 s -> 0.57 s)."""
    it = iter(texts)
    while chunk := list(itertools.islice(it, TRAIN_CHUNK)):
        yield "\n".join(chunk)


MIN_PAIR_FREQUENCY = 2
PREFIX = "##"


def word_counts(tokenizer: Tokenizer, texts: Iterable[str]) -> Counter[str]:
    """How often each pre-tokenized word occurs, through the tokenizer's own normalizer and pre-tokenizer."""
    normalizer, pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def learn_merges(counts: Counter[str], vocab_size: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Byte-pair merges learned deterministically: the most frequent adjacent pair is merged first, ties
    broken by the pair's text. Returns (alphabet, merges); symbols inside a word carry the "##" prefix.

    Why not the `tokenizers` trainers: they break ties in hash-map order, so the same data gives a few
    dozen different subwords from run to run, and `--seed` could not make runs repeatable."""
    words: list[list[str]] = []
    freq: list[int] = []
    letters: Counter[str] = Counter()
    for word, count in sorted(counts.items()):
        symbols = [word[0]] + [PREFIX + ch for ch in word[1:]]
        words.append(symbols)
        freq.append(count)
        for symbol in symbols:
            letters[symbol] += count
    # Every symbol a word can start from stays, unless the alphabet alone exceeds the vocabulary.
    alphabet = sorted(sorted(letters, key=lambda sym: (-letters[sym], sym))[:vocab_size])
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for i, symbols in enumerate(words):
        for pair in itertools.pairwise(symbols):
            pairs[pair] += freq[i]
            where.setdefault(pair, set()).add(i)
    heap = [(-count, pair) for pair, count in pairs.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    size = len(alphabet)
    while size < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        count = pairs.get(pair, 0)
        if count != -negative or count <= 0:
            continue  # a stale heap entry
        if count < MIN_PAIR_FREQUENCY:
            break
        a, b = pair
        merged = a + b.removeprefix(PREFIX)
        merges.append(pair)
        size += 1
        changed: set[tuple[str, str]] = set()
        for i in sorted(where.pop(pair, ())):
            symbols, out, k = words[i], [], 0
            while k < len(symbols):
                if k + 1 < len(symbols) and symbols[k] == a and symbols[k + 1] == b:
                    out.append(merged)
                    k += 2
                else:
                    out.append(symbols[k])
                    k += 1
            if len(out) == len(symbols):
                continue
            for old in itertools.pairwise(symbols):
                pairs[old] -= freq[i]
                changed.add(old)
            for new in itertools.pairwise(out):
                pairs[new] += freq[i]
                changed.add(new)
                where.setdefault(new, set()).add(i)
            words[i] = out
        pairs.pop(pair, None)
        for other in changed:
            if other != pair and pairs.get(other, 0) > 0:
                heapq.heappush(heap, (-pairs[other], other))
    return alphabet, merges


def _subword_trained(texts: Sequence[str], cfg: TokenizerConfig) -> Tokenizer:
    """WordPiece or BPE from deterministic merges, behind the shared front end."""
    counter = Tokenizer(models.WordLevel(unk_token=UNK))
    _front_end(counter, cfg)
    alphabet, merges = learn_merges(word_counts(counter, capped(texts, cfg)), cfg.vocab_size - len(SPECIAL_TOKENS))
    tokens = SPECIAL_TOKENS + alphabet + [a + b.removeprefix(PREFIX) for a, b in merges]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    if cfg.kind == "wordpiece":
        model: models.Model = models.WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=100)
    else:
        model = models.BPE(vocab, merges, unk_token=UNK, continuing_subword_prefix=PREFIX)
    trained = Tokenizer(model)
    _front_end(trained, cfg)
    return trained


def train_tokenizer(texts: Sequence[str], cfg: TokenizerConfig) -> Tokenizer:
    """Learn a vocabulary from the training texts; truncation goes into tokenizer.json for head truncation."""
    trained = _subword_trained(texts, cfg) if cfg.kind in ("wordpiece", "bpe") else _hf_trained(texts, cfg)
    tokenizer = canonical_ids(trained)
    if tokenizer.token_to_id(PAD) != PAD_ID or tokenizer.token_to_id(UNK) != UNK_ID:
        raise AssertionError("special tokens must take ids 0 and 1")
    configure_truncation(tokenizer, cfg)
    return tokenizer


def add_words(tokenizer: Tokenizer, words: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
    """A word-level tokenizer with these words added to its vocabulary (the ids renumbered canonically)."""
    data = json.loads(tokenizer.to_str())
    vocab = data["model"]["vocab"]
    if data["model"]["type"] != "WordLevel":
        raise ValueError("only word-level vocabularies take whole words")
    for word in words:
        vocab.setdefault(word, len(vocab))
    grown = canonical_ids(Tokenizer.from_str(json.dumps(data)))
    configure_truncation(grown, cfg)
    return grown


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


def truncated_fraction(tokenizer: Tokenizer, texts: Sequence[str], cfg: TokenizerConfig) -> float:
    """The share of `texts` longer than max_length tokens (measured without the tokenizer's own truncation)."""
    if not texts:
        return 0.0
    saved = tokenizer.truncation
    tokenizer.no_truncation()
    try:
        encodings = tokenizer.encode_batch_fast(list(capped(texts, cfg)), add_special_tokens=False)
    finally:
        if saved is not None:
            tokenizer.enable_truncation(**saved)
    return sum(len(e.ids) > cfg.max_length for e in encodings) / len(texts)


def _cap(text: str, cfg: TokenizerConfig) -> str:
    cap = CHARS_PER_TOKEN_CAP * cfg.max_length
    if len(text) <= cap:
        return text
    if cfg.truncation == "head":
        return text[:cap]
    return text[: cap // 2] + " " + text[-(cap // 2) :]


def capped(texts: Iterable[str], cfg: TokenizerConfig) -> Iterable[str]:
    """The texts, each cut to what max_length tokens can come from (see CHARS_PER_TOKEN_CAP)."""
    cap = CHARS_PER_TOKEN_CAP * cfg.max_length
    return (t if len(t) <= cap else _cap(t, cfg) for t in texts)  # the common case without a call


JOIN_CHUNK = 256  # texts per joined string in encode
JOIN_MIN = 4096  # fewer texts than this are encoded one string each
SEPARATOR = "\ue000grutext:separator\ue000"  # private-use characters around a name: no real text holds it
_SEPARATED: list[tuple[Tokenizer, Tokenizer, int]] = []  # (tokenizer, its copy that knows SEPARATOR, its id)


def _separated(tokenizer: Tokenizer) -> tuple[Tokenizer, int]:
    """A copy of `tokenizer` without truncation and with SEPARATOR as a special token (kept for the last
    tokenizer asked for: building it takes 10-30 ms)."""
    for original, copy, separator in _SEPARATED:
        if original is tokenizer:
            return copy, separator
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.add_special_tokens([AddedToken(SEPARATOR, special=True, normalized=False)])
    added = copy.token_to_id(SEPARATOR)
    if added is None:
        raise AssertionError("the separator token was not added")
    _SEPARATED[:] = [(tokenizer, copy, added)]
    return copy, added


def _encode_joined(tokenizer: Tokenizer, texts: list[str], cfg: TokenizerConfig) -> list[list[int]] | None:
    """Token ids of many texts, JOIN_CHUNK texts per string, joined by a special token that splits the string
    before normalization, so every text is normalized and pre-tokenized on its own exactly as when encoded
    alone (a test compares both for every tokenizer kind). Why: `tokenizers` builds a Python Encoding object
    per input string; sst2's 67k sentences encode in 0.65 s instead of 1.0 s. None if a text holds SEPARATOR."""
    copy, separator = _separated(tokenizer)
    chunks = [texts[k : k + JOIN_CHUNK] for k in range(0, len(texts), JOIN_CHUNK)]
    encodings = copy.encode_batch_fast([SEPARATOR.join(chunk) for chunk in chunks], add_special_tokens=False)
    out: list[list[int]] = []
    for chunk, encoding in zip(chunks, encodings, strict=True):
        ids = encoding.ids
        if ids.count(separator) != len(chunk) - 1:
            return None
        start = 0
        for _ in range(len(chunk) - 1):
            end = ids.index(separator, start)
            out.append(ids[start:end])
            start = end + 1
        out.append(ids[start:])
    if cfg.truncation == "head":
        out = [row if len(row) <= cfg.max_length else row[: cfg.max_length] for row in out]
    return out


ENCODE_GROUP = 4096  # texts the tokenizer holds Encoding objects for at a time (they take ~100 bytes a token)


def unknown_share(ids: Sequence[Sequence[int]]) -> tuple[int, float]:
    """(tokens, the share of them that are [UNK]) of encoded texts: how well a tokenizer fits them."""
    tokens = sum(len(r) for r in ids)
    return tokens, sum(list(r).count(UNK_ID) for r in ids) / max(tokens, 1)


def encode(tokenizer: Tokenizer, texts: Sequence[str], cfg: TokenizerConfig) -> list[list[int]]:
    """Token ids per text, at most max_length each; an empty text gives an empty list. Large inputs go
    through the tokenizer ENCODE_GROUP texts at a time, so its transient objects stay bounded."""
    if len(texts) > ENCODE_GROUP:
        return [
            row
            for k in range(0, len(texts), ENCODE_GROUP)
            for row in encode(tokenizer, texts[k : k + ENCODE_GROUP], cfg)
        ]
    cut = list(capped(texts, cfg))
    ids = _encode_joined(tokenizer, cut, cfg) if len(cut) >= JOIN_MIN else None
    if ids is None:
        ids = [e.ids for e in tokenizer.encode_batch_fast(cut, add_special_tokens=False)]
    if cfg.truncation == "head_tail":
        head = (cfg.max_length + 1) // 2
        tail = cfg.max_length - head
        ids = [row if len(row) <= cfg.max_length else row[:head] + row[len(row) - tail :] for row in ids]
    return ids


# ---------------------------------------------------------------------------------------------- char n-grams


def _kept(words: list[Any], cfg: TokenizerConfig) -> list[Any]:
    """The words whose tokens encode() keeps (the word tokenizer makes one token a word)."""
    if len(words) <= cfg.max_length:
        return words
    if cfg.truncation == "head":
        return words[: cfg.max_length]
    head = (cfg.max_length + 1) // 2
    return words[:head] + words[len(words) - (cfg.max_length - head) :]


GRAM_CACHE = 200_000  # words whose n-gram rows are remembered while encoding (then forgotten, to bound memory)


def _hashed(word: str, offset: int, span: tuple[int, int], buckets: int) -> list[int]:
    """The table rows of one word's character n-grams: `<word>`'s substrings of span[0]..span[1] characters,
    crc32 of their UTF-8 (the same on every machine) mod `buckets`, after the `offset` vocabulary rows."""
    marked, (low, high) = f"<{word}>", span  # normalized by the Rust tokenizer: valid UTF-8
    return [
        offset + zlib.crc32(marked[i : i + n].encode()) % buckets
        for n in range(low, high + 1)
        for i in range(len(marked) - n + 1)
    ]


def _token_grams(
    tokenizer: Tokenizer, texts: Iterable[str], cfg: TokenizerConfig, span: tuple[int, int], buckets: int
) -> Iterator[list[list[int]]]:
    normalizer, pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer
    offset = tokenizer.get_vocab_size()
    seen: dict[str, list[int]] = {}
    for text in capped(texts, cfg):
        rows = []
        for word, _ in _kept(pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)), cfg):
            grams = seen.get(word)
            if grams is None:
                if len(seen) >= GRAM_CACHE:
                    seen.clear()
                grams = seen[word] = _hashed(word, offset, span, buckets)
            rows.append(grams)
        yield rows


def token_char_grams(
    tokenizer: Tokenizer, texts: Sequence[str], cfg: TokenizerConfig, span: tuple[int, int], buckets: int
) -> list[list[list[int]]]:
    """For each text, for each of its tokens (the word tokenizer's: one a word), the bigram table rows of the
    word's character n-grams: fastText's, with < and > around the word, `span` long, hashed (crc32, stable
    everywhere) into the `buckets` rows after the vocabulary's. Unknown words get theirs too: that is what
    they are for, a word never seen in training still shares pieces with words that were."""
    return list(_token_grams(tokenizer, texts, cfg, span, buckets))


def char_grams(
    tokenizer: Tokenizer, texts: Sequence[str], cfg: TokenizerConfig, span: tuple[int, int], buckets: int
) -> list[list[int]]:
    """token_char_grams(), each text's rows in one list: what the bigram head reads beside the token ids."""
    return [[g for grams in text for g in grams] for text in _token_grams(tokenizer, texts, cfg, span, buckets)]


def encode_inputs(
    tokenizer: Tokenizer, texts: Sequence[str], tok_cfg: TokenizerConfig, model_cfg: ModelConfig
) -> tuple[Rows, Bags | None]:
    """What a model reads of each text: its token ids, and its words' character n-grams where the model
    reads them (None where it does not). Training, both engines and the server all encode here. The ids come
    as Rows (flat int32), encoded ENCODE_GROUP texts at a time: imdb's 50,000 reviews never sit in memory as
    lists of Python ints."""
    span, buckets = model_cfg.char_span, model_cfg.bigram_buckets
    id_parts: list[Rows] = []
    gram_parts: list[Bags] = []
    for k in range(0, len(texts), ENCODE_GROUP):
        part = texts[k : k + ENCODE_GROUP]
        ids = encode(tokenizer, part, tok_cfg)
        if span is not None and buckets:
            gram_parts.append(gram_bags(tokenizer, part, ids, tok_cfg, span, buckets))
        id_parts.append(Rows.of(ids))
    return Rows.join(id_parts), Bags.join(gram_parts) if span is not None and buckets else None


GRAM_CHUNK = 1024  # texts whose n-grams are expanded at once (imdb: about 40 MB of transient arrays)


def gram_bags(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    ids: Sequence[Sequence[int]],
    cfg: TokenizerConfig,
    span: tuple[int, int],
    buckets: int,
) -> Bags:
    """char_grams() of texts already encoded, as Bags (each text's distinct rows and counts), in array code: a
    word with a vocabulary row is its row's string, so its n-grams are hashed once per tokenizer and gathered for
    every occurrence; only unknown words need their characters, found through the tokenizer's offsets."""
    maker = _GramBags(tokenizer, cfg, span, buckets)
    parts = [maker.chunk(texts[k : k + GRAM_CHUNK], ids[k : k + GRAM_CHUNK]) for k in range(0, len(ids), GRAM_CHUNK)]
    return Bags.join(parts)


# The n-gram rows of the last tokenizer's vocabulary words, kept across calls (train, validation and test; each
# chunk predict reads): (tokenizer, span, buckets, rows by id). The tokenizer is held, so `is` cannot mistake it.
_VOCAB_GRAMS: list[tuple[Tokenizer, tuple[int, int], int, dict[int, npt.NDArray[np.int64]]]] = []


def _vocab_grams(tokenizer: Tokenizer, span: tuple[int, int], buckets: int) -> dict[int, npt.NDArray[np.int64]]:
    for owner, owner_span, owner_buckets, rows in _VOCAB_GRAMS:
        if owner is tokenizer and owner_span == span and owner_buckets == buckets:
            return rows
    rows = {}
    _VOCAB_GRAMS[:] = [(tokenizer, span, buckets, rows)]
    return rows


class _GramBags:
    def __init__(self, tokenizer: Tokenizer, cfg: TokenizerConfig, span: tuple[int, int], buckets: int) -> None:
        self.tokenizer, self.cfg, self.span, self.buckets = tokenizer, cfg, span, buckets
        self.known = _vocab_grams(tokenizer, span, buckets)  # a vocabulary id's rows
        self.unknown: dict[str, npt.NDArray[np.int64]] = {}  # an unknown word's rows

    def chunk(self, texts: Sequence[str], ids: Sequence[Sequence[int]]) -> Bags:
        """gram_bags() of one chunk: each token a code (its id, or vocabulary size + j for the chunk's j-th unknown
        word), each distinct code's rows looked up once, every token's rows gathered with array indexing."""
        vocab = self.tokenizer.get_vocab_size()
        sizes = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        codes = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(sizes.sum()))
        words: list[str] = []  # the chunk's unknown words, code vocab + j
        where: dict[str, int] = {}
        unknown = [k for k, row in enumerate(ids) if UNK_ID in row]
        if unknown:
            starts = np.concatenate([[0], np.cumsum(sizes)])
            cut = list(capped([texts[k] for k in unknown], self.cfg))
            # Where each unknown word is: the tokenizer's offsets (its Rust threads normalize and split the texts
            # in parallel; pre_tokenize_str would make a Python tuple for every word of every text), each unknown
            # word then normalized on its own, as the pre-tokenizer saw it.
            encodings = self.tokenizer.encode_batch(cut, add_special_tokens=False)
            normalize = self.tokenizer.normalizer.normalize_str
            for k, text, encoding in zip(unknown, cut, encodings, strict=True):
                offsets = _kept(encoding.offsets, self.cfg)
                if len(offsets) != sizes[k]:
                    raise AssertionError("character n-grams need one token a word (the word tokenizer)")
                base = int(starts[k])
                for position in np.flatnonzero(codes[base : base + len(offsets)] == UNK_ID):
                    start, end = offsets[position]
                    word = normalize(text[start:end]).strip()  # a CJK character normalizes to " 字 "
                    code = where.get(word)
                    if code is None:
                        code = where[word] = vocab + len(words)
                        words.append(word)
                    codes[base + position] = code
        distinct, inverse = np.unique(codes, return_inverse=True)
        if len(self.unknown) > GRAM_CACHE:  # unknown words are as many as the data makes: forget them now and then
            self.unknown.clear()
        table = []
        for code in distinct.tolist():
            if code < vocab:
                found = self.known.get(code)
                if found is None:
                    word = self.tokenizer.id_to_token(code)
                    assert word is not None  # an id encode() gave
                    found = self.known[code] = np.array(_hashed(word, vocab, self.span, self.buckets), dtype=np.int64)
            else:
                word = words[code - vocab]
                found = self.unknown.get(word)
                if found is None:
                    found = self.unknown[word] = np.array(_hashed(word, vocab, self.span, self.buckets), dtype=np.int64)
            table.append(found)
        per_code = np.fromiter((len(g) for g in table), dtype=np.int64, count=len(table))
        flat = np.concatenate(table) if table else np.zeros(0, dtype=np.int64)
        first = np.concatenate([[0], np.cumsum(per_code)[:-1]]) if len(table) else np.zeros(0, dtype=np.int64)
        per_token = per_code[inverse]
        total = int(per_token.sum())
        within = np.arange(total) - np.repeat(np.cumsum(per_token) - per_token, per_token)
        rows = flat[np.repeat(first[inverse], per_token) + within]
        text_of = np.repeat(np.repeat(np.arange(len(ids)), sizes), per_token)
        return Bags.of(text_of, rows, len(ids))
