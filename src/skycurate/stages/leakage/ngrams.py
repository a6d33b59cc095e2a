"""Tokens with their character spans, and 64-bit n-gram hashes, for a whole Arrow batch at once.

Normalisation follows the GPT-3 / lm-eval janitor recipe, made Unicode-aware:

- every code point is folded on its own: NFKC when that gives one code point (full-width
  ``Ａ１，`` -> ``A1,``), then lower case when that gives one code point;
- diacritics are removed when the base letter is one code point (``café`` -> ``cafe``);
- whitespace, punctuation and symbols separate words; apostrophes, format and control
  characters and combining marks are *deleted* (``don't`` -> ``dont``). This departs from
  the janitor, which deletes every ASCII punctuation mark: with deletion ``well-known`` /
  ``well known`` and ``stop—the`` / ``stop — the`` would differ, and such punctuation and
  spacing edits are exactly what a lightly edited benchmark copy shows;
- each Han, Hiragana or Katakana character is a token of its own (Chinese and Japanese do
  not put spaces between words), so mixed text such as ``2023年GDP增长`` gives
  ``2023 年 gdp 增 长``;
- a token's span is ``[start, end)`` in code points of the *original* string, from its first
  to its last kept character (Python ``str`` indices), so callers can cut the original text
  around a match.

Folding is per code point so that spans map back to the original text exactly; the rare
characters whose NFKC or lower case form is several code points (ligatures like ``ﬁ``, ``İ``)
are kept as they are.

Speed: no Python loop runs per character or per token. The batch's UTF-8 buffer is decoded
once into a numpy array of code points, classified and folded with lookup tables, tokens are
found from class changes, a token's hash is a polynomial over its characters' mixed code
points summed with ``np.add.reduceat``, and n-gram hashes are rolling multiply-adds over the
token hashes (``n`` vector passes, the shorter lengths read off on the way).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex

from skycurate.stages.hashing import fmix64

# Character classes.
SPACE, WORD, CJK, DELETE = 0, 1, 2, 3

_SEED = np.uint64(0x5EED_1EA4_A6E0_D17A)
_GOLDEN = np.uint64(0x9E37_79B9_7F4A_7C15)
_MAX_CP = 0x110000
# Code points whose folding is looked up: the BMP less the blocks that never fold (CJK
# ideographs, Hangul syllables, private use), plus the SMP blocks with case or compatibility
# forms (Deseret, Osage, ..., mathematical alphanumerics, enclosed alphanumerics, Adlam).
_FOLD_RANGES = ((0x41, 0x3400), (0xA000, 0xAC00), (0xF900, 0x10000), (0x10400, 0x10500), (0x10C80, 0x10D00),
                (0x118A0, 0x11900), (0x16E40, 0x16EA0), (0x1D400, 0x1D800), (0x1E900, 0x1E960),
                (0x1F100, 0x1F250))


_APOSTROPHES = "'\u2018\u2019\u02bc\u0060\u00b4"


def _fold_char(ch: str) -> str:
    """One code point folded, or ``ch`` itself where a step would give several code points."""
    f = unicodedata.normalize("NFKC", ch)
    if len(f) != 1:
        f = ch
    bare = "".join(x for x in unicodedata.normalize("NFD", f) if unicodedata.category(x) not in ("Mn", "Me"))
    if len(bare) == 1:
        f = bare
    low = f.lower()
    return low if len(low) == 1 else f


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(fold: code point -> folded code point, cls: folded code point -> class); built once per process (~1 s)."""
    fold = np.arange(_MAX_CP, dtype=np.uint32)
    for lo, hi in _FOLD_RANGES:
        for c in range(lo, hi):
            f = _fold_char(chr(c))
            if f != chr(c):
                fold[c] = ord(f)
    cls = np.full(_MAX_CP, WORD, dtype=np.uint8)
    # Classes by regex over the BMP and SMP; the planes above are whole blocks: CJK ideograph
    # extensions (2, 3), tags and variation selectors (14), private use (15, 16).
    everything = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x20000)))

    def mark(pattern: str, value: int) -> None:
        idx = np.fromiter((m.start() for m in regex.finditer(pattern, everything)), dtype=np.int64)
        idx[idx >= 0xD800] += 0x800   # positions after the skipped surrogate block
        cls[idx] = value

    mark(r"[\p{Mn}\p{Me}\p{Cf}\p{Cc}\p{Co}]", DELETE)
    mark(r"[\s\p{P}\p{S}]", SPACE)
    mark(r"[\p{Han}\p{Hiragana}\p{Katakana}]", CJK)
    cls[[ord(a) for a in _APOSTROPHES]] = DELETE
    cls[0xD800:0xE000] = DELETE
    cls[0x20000:0x40000] = CJK
    cls[0xE0000:] = DELETE
    return fold, cls


_P = 0x100000001B3                    # FNV prime: odd, so invertible modulo 2**64
_P_INV = pow(_P, -1, 1 << 64)
_pow_cache: dict[str, np.ndarray] = {}


def _powers(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(P**i, P**-i) mod 2**64 for i < k (at least): position weights of characters."""
    have = _pow_cache.get("pow")
    if have is None or len(have) < k:
        size = 1 << max(16, int(k - 1).bit_length())
        for name, base in (("pow", _P), ("inv", _P_INV)):
            p = np.full(size, np.uint64(base), dtype=np.uint64)
            p[0] = 1
            _pow_cache[name] = np.cumprod(p, dtype=np.uint64)
    return _pow_cache["pow"], _pow_cache["inv"]


@lru_cache(maxsize=1)
def _bmp_hashes() -> np.ndarray:
    """The mixed hash of every folded BMP code point (astral ones are mixed on the fly)."""
    fold, _ = _tables()
    return fmix64(fold[:0x10000].astype(np.uint64) + _SEED)


@lru_cache(maxsize=1)
def _raw_classes() -> np.ndarray:
    """Class of each *unfolded* code point (the class of what it folds to)."""
    fold, cls = _tables()
    return cls[fold]


@lru_cache(maxsize=1)
def _ngram_mult() -> np.ndarray:
    rng = np.random.default_rng(0x1EA4A6E)
    return rng.integers(0, 2**64, size=256, dtype=np.uint64, endpoint=False) | np.uint64(1)


@lru_cache(maxsize=1)
def _len_tags() -> np.ndarray:
    return np.arange(257, dtype=np.uint64) * _GOLDEN


@dataclass
class Tokens:
    """The tokens of a batch of texts, concatenated in row order.

    ``start``/``end`` are code point offsets into each token's own text; ``counts[i]`` tokens
    belong to text ``i`` and ``offsets`` is their running sum (``len(texts) + 1``).
    """

    hashes: np.ndarray   # uint64 per token
    start: np.ndarray    # int64
    end: np.ndarray      # int64
    counts: np.ndarray   # int64 per text
    offsets: np.ndarray  # int64 per text + 1

    def of(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


def _code_points(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(code points of all texts concatenated, per-text code point offsets); nulls are empty."""
    t = pc.fill_null(texts.cast(pa.large_string()), "")
    if isinstance(t, pa.ChunkedArray):
        t = t.combine_chunks()
    lens = pc.utf8_length(t).to_numpy(zero_copy_only=False).astype(np.int64)
    offs = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=offs[1:])
    if offs[-1] == 0:
        return np.zeros(0, np.uint32), offs
    boffs = np.frombuffer(t.buffers()[1], dtype=np.int64)[t.offset:t.offset + len(t) + 1]
    raw = t.buffers()[2][int(boffs[0]):int(boffs[-1])]
    cps = np.frombuffer(bytes(raw).decode("utf-8").encode("utf-32-le"), dtype=np.uint32)
    return cps, offs


_TOKENIZE_CHARS = 1 << 21   # texts are tokenised in groups of about this many code points


def tokenize(texts: pa.Array | list[str | None]) -> Tokens:
    """Tokens, their spans and hashes for every text of ``texts`` (see the module docstring)."""
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(texts, pa.large_string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    sizes = pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    if sizes.sum() <= _TOKENIZE_CHARS:
        return _tokenize(texts)
    # Bounded memory and cache-sized arrays: a group per ~2M code points.
    block = np.cumsum(sizes) // _TOKENIZE_CHARS
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(block)) + 1, [len(texts)]])
    parts = [_tokenize(texts.slice(int(a), int(b - a))) for a, b in pairwise(cuts)]
    counts = np.concatenate([t.counts for t in parts])
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Tokens(np.concatenate([t.hashes for t in parts]), np.concatenate([t.start for t in parts]),
                  np.concatenate([t.end for t in parts]), counts, offsets)


def _tokenize(texts: pa.Array) -> Tokens:
    cps, char_offs = _code_points(texts)
    n_texts = len(char_offs) - 1
    cls = _raw_classes()[cps]
    # Deleted characters vanish: words are runs of WORD characters in what remains, and a text
    # boundary always ends a word. Most texts have none: then no compaction pass is needed.
    deleted = cls == DELETE
    kept = np.flatnonzero(~deleted) if deleted.any() else None
    kc = cls if kept is None else cls[kept]
    doc_first = char_offs[:-1] if kept is None else np.searchsorted(kept, char_offs[:-1])
    content = (kc - np.uint8(1)) < np.uint8(2)            # WORD or CJK (SPACE wraps to 255)
    first = np.empty(len(kc), bool)
    if len(kc):
        first[0] = True
        np.not_equal(kc[:-1], WORD, out=first[1:])
    first[doc_first[doc_first < len(kc)]] = True
    first |= kc == CJK
    first &= content
    cpos = np.flatnonzero(content)                         # content characters (index into kc)
    tok_first = np.flatnonzero(first[cpos])                # index into cpos of each token's first char
    n_tok = len(tok_first)
    if n_tok == 0:
        z = np.zeros(0, np.int64)
        return Tokens(np.zeros(0, np.uint64), z, z, np.zeros(n_texts, np.int64), np.zeros(n_texts + 1, np.int64))
    pos = cpos if kept is None else kept[cpos]             # positions in cps
    c = cps[pos]
    v = _bmp_hashes()[np.minimum(c, 0xFFFF)]
    astral = np.flatnonzero(c > 0xFFFF)
    if len(astral):
        v[astral] = fmix64(_tables()[0][c[astral]].astype(np.uint64) + _SEED)
    # sum_i v_i * P**(i - first): global powers, then one inverse power per token.
    pw, inv = _powers(len(v))
    v *= pw[:len(v)]
    hashes = fmix64(np.add.reduceat(v, tok_first) * inv[tok_first])
    start = pos[tok_first]
    end = np.empty(n_tok, np.int64)
    end[:-1] = pos[tok_first[1:] - 1] + 1
    end[-1] = pos[-1] + 1
    bounds = np.searchsorted(start, char_offs)
    counts = np.diff(bounds)
    tok_doc = np.repeat(np.arange(n_texts), counts)
    base = char_offs[:-1][tok_doc]
    return Tokens(hashes, start - base, end - base, counts, bounds - bounds[0])


def ngram_hashes(tokens: Tokens, n: int, lengths: tuple[int, ...] = ()) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Rolling hashes of every ``L``-gram, for ``L`` in ``{n} | lengths`` (each <= n).

    Returns ``{L: (hashes, first_token)}``: ``first_token`` indexes ``tokens`` (global, so the
    text is ``searchsorted(tokens.offsets, first_token, 'right') - 1``). An ``L``-gram never
    crosses a text boundary. The length is mixed into the hash, so a 9-gram never equals a
    13-gram.
    """
    want = sorted({n, *lengths})
    if want[0] < 1 or want[-1] > n or n > 256:
        raise ValueError(f"n-gram lengths must be within 1..n (n <= 256): {want}")
    tok = tokens.hashes
    total = len(tok)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if total == 0:
        return {L: (np.zeros(0, np.uint64), np.zeros(0, np.int64)) for L in want}
    doc_end = np.repeat(tokens.offsets[1:], tokens.counts)
    remaining = doc_end - np.arange(total)              # tokens left in the text from here (>= 1)
    mult = _ngram_mult()
    h = tok * mult[0]
    # Terms read across a text boundary only reach positions that have too few tokens left
    # for the length being read, and those positions are never emitted.
    for k in range(1, want[-1] + 1):
        if k in want:
            ok = np.flatnonzero(remaining >= k)
            out[k] = (fmix64(h[ok] + _len_tags()[k]), ok)
        if k < want[-1] and k < total:
            h[:total - k] += tok[k:] * mult[k]
    return out


def item_ngram_hashes(texts: pa.Array | list[str | None], n: int, min_tokens: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per text, the distinct hashes to index, and its token count.

    A text of at least ``n`` tokens gives its ``n``-grams; a shorter one of at least
    ``min_tokens`` tokens gives one hash of all its tokens (so short benchmark items can still
    be found); a shorter one still gives none.
    """
    toks = tokenize(texts)
    counts = toks.counts
    lengths = tuple(sorted({int(c) for c in counts if min_tokens <= c < n}))
    grams = ngram_hashes(toks, n, lengths)
    hashes_n, first_n = grams[n]
    doc_n = np.searchsorted(toks.offsets, first_n, side="right") - 1
    bounds = np.searchsorted(doc_n, np.arange(len(counts) + 1))
    out = [np.unique(hashes_n[bounds[i]:bounds[i + 1]]) for i in range(len(counts))]
    for L in lengths:
        h, first = grams[L]
        for i in np.flatnonzero(counts == L):
            out[i] = h[np.searchsorted(first, toks.offsets[i]):][:1]
    return out, counts
