"""MinHash signatures and LSH band hashes for a whole Arrow batch at once.

No Python loop runs per shingle or per document: Arrow compute normalises and splits
the texts, unique words are hashed once per batch (xxhash), numpy builds the rolling
n-gram hashes over the flattened token stream (masking document boundaries), and the
permutations are multiply-add hashes on uint64 whose wrap-around is the modulo
(no ``%``), reduced per document with ``np.minimum.reduceat`` over bounded chunks.

Shingles:
- words (every language not in ``char_ngram_langs``): NFKC, lower case, punctuation and
  symbols replaced by spaces, each Han character of mixed text made its own word, split
  on whitespace; shingles are ``word_ngram`` consecutive words;
- characters (Chinese): NFKC, lower case, punctuation, symbols and whitespace removed;
  shingles are ``char_ngram`` consecutive code points;
- a text shorter than n tokens has one shingle made of all its tokens, so that two
  different short texts do not collide; a text with no token at all (empty,
  punctuation only) gets null bands and is left to exact dedup.

Signatures depend only on the text, the language and the config, never on how rows are
batched, so the same page always lands in the same buckets across runs and versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from skycurate.stages.hashing import fmix64
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from skycurate.schemas.web_dedup import MINHASH_BANDS_FIELD, MINHASH_SIG_FIELD, MinHashConfig
from skycurate.stages.accounting import REJECT_REASON
from skycurate.stages.base import BatchStage, with_columns

_U64_MAX = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_PUNCT = r"[\p{P}\p{S}]+"
_PUNCT_SPACE = r"[\p{P}\p{S}\s]+"
_HAN = r"(\p{Han})"
# Texts are processed in groups of about this many UTF-8 bytes, and shingles in chunks of
# this many hashes per permutation pass: memory stays bounded whatever the batch size.
_GROUP_BYTES = 8 << 20
_CHUNK = 1 << 15


@dataclass(frozen=True)
class _Params:
    a: np.ndarray            # (num_perm,) odd multipliers
    b: np.ndarray            # (num_perm,) offsets
    ngram_mult: np.ndarray   # odd multipliers of the token at each n-gram position
    band_mult: np.ndarray    # odd multipliers of the value at each row of a band
    token_seed: int          # xxhash seed of words; also mixed into code points


@lru_cache(maxsize=16)
def _params(seed: int, num_perm: int, rows: int, max_n: int) -> _Params:
    rng = np.random.default_rng(seed)

    def odd(k: int) -> np.ndarray:
        return rng.integers(0, 2**64, size=k, dtype=np.uint64, endpoint=False) | np.uint64(1)

    a = odd(num_perm)
    b = rng.integers(0, 2**64, size=num_perm, dtype=np.uint64)
    ngram_mult = odd(64)
    band_mult = odd(64)
    token_seed = int(rng.integers(0, 2**63))
    return _Params(a, b, ngram_mult[:max(max_n, 1)], band_mult[:rows], token_seed)


# ---------------------------------------------------------------------------- normalisation


def normalize_words(text: pa.Array) -> pa.Array:
    """NFKC, lower case, punctuation/symbols -> space, Han characters spaced out, trimmed."""
    t = pc.utf8_lower(pc.utf8_normalize(text, "NFKC"))
    t = pc.replace_substring_regex(t, _PUNCT, " ")
    t = pc.replace_substring_regex(t, _HAN, r" \1 ")
    return pc.utf8_trim_whitespace(t)


def normalize_chars(text: pa.Array) -> pa.Array:
    """NFKC, lower case, punctuation, symbols and whitespace removed."""
    t = pc.utf8_lower(pc.utf8_normalize(text, "NFKC"))
    return pc.replace_substring_regex(t, _PUNCT_SPACE, "")


# ---------------------------------------------------------------------------- token streams


def _word_tokens(text: pa.Array, p: _Params) -> tuple[np.ndarray, np.ndarray]:
    """(token hashes of all texts, concatenated; tokens per text)."""
    norm = normalize_words(text)
    norm = pc.if_else(pc.equal(norm, ""), pa.scalar(None, pa.string()), norm)
    words = pc.utf8_split_whitespace(norm)
    lens = pc.fill_null(pc.list_value_length(words), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = words.flatten()
    if len(flat) == 0:
        return np.zeros(0, np.uint64), lens
    enc = pc.dictionary_encode(flat)
    seed = p.token_seed
    # One hash per distinct word of the batch: the only Python-level loop, over the vocabulary.
    vocab = np.fromiter((xxhash.xxh3_64_intdigest(w, seed) for w in enc.dictionary.cast(pa.binary()).to_pylist()),
                        dtype=np.uint64, count=len(enc.dictionary))
    return vocab[enc.indices.to_numpy(zero_copy_only=False)], lens


def _char_tokens(text: pa.Array, p: _Params) -> tuple[np.ndarray, np.ndarray]:
    """(code point hashes of all texts, concatenated; code points per text)."""
    norm = pc.fill_null(normalize_chars(text), "").cast(pa.large_string())
    lens = pc.utf8_length(norm).to_numpy(zero_copy_only=False).astype(np.int64)
    if lens.sum() == 0:
        return np.zeros(0, np.uint64), lens
    offsets = np.frombuffer(norm.buffers()[1], dtype=np.int64)[norm.offset:norm.offset + len(norm) + 1]
    raw = norm.buffers()[2][int(offsets[0]):int(offsets[-1])].to_pybytes()
    # One UTF-32 encode of the concatenated texts gives every code point at once.
    cps = np.frombuffer(raw.decode("utf-8").encode("utf-32-le"), dtype=np.uint32)
    return fmix64(cps.astype(np.uint64) + np.uint64(p.token_seed)), lens


def _shingles(tokens: np.ndarray, lens: np.ndarray, n: int, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rolling n-gram hashes over a flattened token stream: (shingle hashes, shingles per text).

    Shingle j of a text hashes tokens j..j+n-1 of that text (never across a text
    boundary); a text of 0 < k < n tokens has one shingle of its k tokens.
    """
    total = len(tokens)
    counts = np.where(lens >= n, lens - n + 1, np.minimum(lens, 1))
    if total == 0:
        return np.zeros(0, np.uint64), counts
    starts = np.zeros(len(lens), np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    doc_of = np.repeat(np.arange(len(lens)), lens)
    remaining = (starts + lens)[doc_of] - np.arange(total)   # tokens left in the text from j (>= 1)
    h = tokens * mult[0]
    for k in range(1, min(n, total)):
        term = tokens[k:] * mult[k]
        term[remaining[:total - k] <= k] = 0
        h[:total - k] += term
    first = np.zeros(total, bool)
    first[starts[lens > 0]] = True
    keep = (remaining >= n) | (first & (remaining < n))
    return fmix64(h[keep]), counts


def _min_hash(shingles: np.ndarray, counts: np.ndarray, p: _Params) -> np.ndarray:
    """(texts, num_perm) uint64: per permutation, the minimum of ``a*x + b mod 2^64`` over each text's shingles.

    Multiply-add on uint64 wraps around, which is the modulo; the high bits carry the
    permutation, and the minimum of the full value is the minimum of its high bits.
    Texts without shingles keep the sentinel 2^64-1 (callers mask them by ``counts``).
    """
    num_perm = len(p.a)
    sig = np.full((num_perm, len(counts)), _U64_MAX, dtype=np.uint64)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    buf = np.empty(min(_CHUNK, max(total, 1)), np.uint64)
    for c0 in range(0, total, _CHUNK):
        c1 = min(c0 + _CHUNK, total)
        lo = np.searchsorted(offsets[1:], c0, side="right")
        hi = np.searchsorted(offsets[:-1], c1, side="left")
        docs = np.arange(lo, hi)
        docs = docs[counts[docs] > 0]
        seg = np.maximum(offsets[docs], c0) - c0
        x = shingles[c0:c1]
        out = buf[:c1 - c0]
        whole = offsets[docs[0]] >= c0 and offsets[docs[-1] + 1] <= c1   # no text crosses the chunk edges
        for i in range(num_perm):
            np.multiply(x, p.a[i], out=out)
            out += p.b[i]
            m = np.minimum.reduceat(out, seg)
            if whole:
                sig[i, docs] = m
            else:
                sig[i, docs] = np.minimum(sig[i, docs], m)
    return sig.T


def _band_hashes(sig: np.ndarray, bands: int, rows: int, p: _Params) -> np.ndarray:
    """(texts, bands) int64: one hash of each band's ``rows`` values (and its index)."""
    v = sig[:, :bands * rows].reshape(len(sig), bands, rows)
    h = (v * p.band_mult[None, None, :]).sum(axis=2, dtype=np.uint64)
    h += np.arange(bands, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return fmix64(h).view(np.int64)


# ---------------------------------------------------------------------------- batch API


def _char_mode(batch: pa.RecordBatch, cfg: MinHashConfig) -> np.ndarray:
    lang = batch.column("lang")
    if not pa.types.is_string(lang.type):
        lang = lang.cast(pa.string())
    hit = pc.is_in(lang, value_set=pa.array(cfg.char_ngram_langs, pa.string()))
    return pc.fill_null(hit, False).to_numpy(zero_copy_only=False)


def _groups(rows: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Split ``rows`` into consecutive groups of about ``_GROUP_BYTES`` of text each."""
    if len(rows) == 0:
        return []
    block = np.cumsum(sizes[rows]) // _GROUP_BYTES
    cuts = np.flatnonzero(np.diff(block)) + 1
    return np.split(rows, cuts)


def shingle_hashes(batch: pa.RecordBatch, cfg: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hashes of every row, concatenated in row order; shingles per row).

    The sets MinHash estimates: ``len(np.intersect1d(a, b)) / len(np.union1d(a, b))`` is the
    exact Jaccard similarity of two rows (benchmarks and tests use this).
    """
    p = _params(cfg.seed, cfg.num_perm, cfg.rows, max(cfg.word_ngram, cfg.char_ngram))
    char = _char_mode(batch, cfg)
    text = batch.column("text")
    parts: list[tuple[int, np.ndarray]] = []
    counts = np.zeros(batch.num_rows, np.int64)
    for mode in (False, True):
        rows = np.flatnonzero(char == mode)
        if len(rows) == 0:
            continue
        sub = text.take(pa.array(rows))
        tokens, lens = _char_tokens(sub, p) if mode else _word_tokens(sub, p)
        n = cfg.char_ngram if mode else cfg.word_ngram
        sh, cnt = _shingles(tokens, lens, n, p.ngram_mult)
        counts[rows] = cnt
        offs = np.concatenate([[0], np.cumsum(cnt)])
        parts.extend((int(r), sh[offs[i]:offs[i + 1]]) for i, r in enumerate(rows))
    parts.sort(key=lambda t: t[0])
    hashes = np.concatenate([s for _, s in parts]) if parts else np.zeros(0, np.uint64)
    return hashes, counts


def signatures(batch: pa.RecordBatch, cfg: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """(rows, num_perm) uint64 MinHash signatures and a mask of rows that have shingles.

    Rows with a null text, or already rejected (``reject_reason`` not null), get no signature.
    """
    p = _params(cfg.seed, cfg.num_perm, cfg.rows, max(cfg.word_ngram, cfg.char_ngram))
    n_rows = batch.num_rows
    text = batch.column("text")
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        text = text.cast(pa.string())
    todo = pc.is_valid(text).to_numpy(zero_copy_only=False)
    if REJECT_REASON in batch.schema.names:
        todo &= pc.is_null(batch.column(REJECT_REASON)).to_numpy(zero_copy_only=False)
    sizes = pc.fill_null(pc.binary_length(text), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    char = _char_mode(batch, cfg)
    sig = np.full((n_rows, cfg.num_perm), _U64_MAX, dtype=np.uint64)
    has = np.zeros(n_rows, bool)
    for mode in (False, True):
        for rows in _groups(np.flatnonzero(todo & (char == mode)), sizes):
            sub = text.take(pa.array(rows))
            tokens, lens = _char_tokens(sub, p) if mode else _word_tokens(sub, p)
            shingles, counts = _shingles(tokens, lens, cfg.char_ngram if mode else cfg.word_ngram, p.ngram_mult)
            sig[rows] = _min_hash(shingles, counts, p)
            has[rows] = counts > 0
    return sig, has


def _list_column(values: np.ndarray, valid: np.ndarray, width: int) -> pa.Array:
    """A list<int64> column: ``values[i]`` (width ``width``) where ``valid``, else null."""
    lengths = np.where(valid, width, 0)
    offsets = np.zeros(len(valid) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = pa.array(np.ascontiguousarray(values[valid]).view(np.int64).ravel(), pa.int64())
    return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=pa.array(~valid))


def minhash_batch(batch: pa.RecordBatch, cfg: MinHashConfig) -> pa.RecordBatch:
    """``batch`` plus ``minhash_bands`` (and ``minhash_sig`` when verifying; else null)."""
    sig, has = signatures(batch, cfg)
    p = _params(cfg.seed, cfg.num_perm, cfg.rows, max(cfg.word_ngram, cfg.char_ngram))
    bands = _band_hashes(sig[has], cfg.bands, cfg.rows, p)
    full = np.zeros((batch.num_rows, cfg.bands), np.int64)
    full[has] = bands
    band_col = _list_column(full, has, cfg.bands)
    if cfg.stores_signature:
        sig_col = _list_column(sig, has, cfg.num_perm)
    else:
        sig_col = pa.nulls(batch.num_rows, MINHASH_SIG_FIELD.type)
    return with_columns(batch, {MINHASH_BANDS_FIELD.name: band_col, MINHASH_SIG_FIELD.name: sig_col})


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal signature values: the MinHash estimate of Jaccard similarity."""
    return float(np.mean(np.asarray(sig_a) == np.asarray(sig_b)))


MINHASH = BatchStage(
    name="minhash",
    fn=minhash_batch,
    requires=("id", "text", "lang"),
    adds=(MINHASH_BANDS_FIELD, MINHASH_SIG_FIELD),
)
