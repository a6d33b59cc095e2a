"""The benchmark n-gram index that decontamination looks corpus n-grams up in.

Split out of ``decontaminate`` because the index is a data structure of its own: built once on the
driver from the benchmark tables (``build_index``), pickled and broadcast as a few flat numpy
buffers, and queried by the scan through ``NgramIndex.contains`` / ``postings`` (a Bloom filter in
front of a binary search). ``decontaminate`` re-exports both names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skycurate.schemas.leakage import BENCHMARK_ITEM_SCHEMA, DecontaminateConfig
from skycurate.stages.leakage.ngrams import item_ngram_hashes

_INDEX_CHUNK = 20_000          # benchmark items tokenised per chunk while building the index


# ============================================================================================ index


@dataclass
class NgramIndex:
    """Benchmark n-gram hashes -> benchmark items, as flat numpy arrays.

    ``keys`` is sorted (a hash repeats once per item that has it) and ``item[i]`` is the item
    of ``keys[i]``; ``items`` has one row per indexed-split item (``benchmark, split,
    item_id, tokens, ngrams``). ``lengths`` are the n-gram lengths present (``n`` plus the
    lengths of short items indexed whole). A Bloom filter over ``keys`` (~2 bytes per key) is
    built lazily where the index is used and never pickled: a binary search costs ~100-300 ns
    per corpus n-gram, two bit probes a few ns, and almost every corpus n-gram misses.
    """

    n: int
    lengths: tuple[int, ...]
    keys: np.ndarray          # uint64, sorted
    item: np.ndarray          # int32, item row of each key
    items: pa.Table           # benchmark, split, item_id, tokens, ngrams
    skipped_short: dict[str, int] = field(default_factory=dict)   # benchmark -> items too short to index
    _bloom: tuple[np.ndarray, int] | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_bloom"] = None
        return state

    @property
    def nbytes(self) -> int:
        """Bytes of what is pickled and broadcast (hash and item arrays plus the item table)."""
        return int(self.keys.nbytes + self.item.nbytes + self.items.nbytes)

    @property
    def bloom_nbytes(self) -> int:
        """Bytes of the Bloom filter each worker builds on first use."""
        return int(self._bloom_filter()[0].nbytes)

    @property
    def num_items(self) -> int:
        return self.items.num_rows

    def _bloom_filter(self) -> tuple[np.ndarray, int]:
        if self._bloom is None:
            uniq = len(self.keys)
            bits = min(40, max(16, int(np.ceil(np.log2(max(uniq, 1) * 16)))))
            arr = np.zeros(1 << (bits - 3), np.uint8)
            for h in _probes(self.keys, bits):
                np.bitwise_or.at(arr, (h >> np.uint64(3)).astype(np.int64),
                                 np.left_shift(np.uint8(1), (h & np.uint64(7)).astype(np.uint8)))
            self._bloom = (arr, bits)
        return self._bloom

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Positions of ``hashes`` that are in the index."""
        if len(self.keys) == 0 or len(hashes) == 0:
            return np.zeros(0, np.int64)
        arr, bits = self._bloom_filter()
        maybe = None
        for h in _probes(hashes, bits):
            bit = (arr[(h >> np.uint64(3)).astype(np.int64)] >> (h & np.uint64(7)).astype(np.uint8)) & np.uint8(1)
            maybe = bit if maybe is None else maybe & bit
        cand = np.flatnonzero(maybe)
        if len(cand) == 0:
            return cand
        q = hashes[cand]
        at = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return cand[self.keys[at] == q]

    def postings(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For hashes known to be in the index: (which hash, item row) for every item holding it."""
        lo = np.searchsorted(self.keys, hashes, side="left")
        hi = np.searchsorted(self.keys, hashes, side="right")
        cnt = hi - lo
        which = np.repeat(np.arange(len(hashes)), cnt)
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(cnt)[:-1]]), cnt)
        return which, self.item[starts + np.arange(int(cnt.sum()))]


def _probes(h: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Two bit positions from disjoint parts of a (well mixed) 64-bit hash."""
    return h >> np.uint64(64 - bits), h & np.uint64((1 << bits) - 1)


def _flatten_tables(tables: Any) -> pa.Table:
    """A table, a list of tables, ``{split: table}`` or ``{benchmark: {split: table}}`` -> one table."""
    found: list[pa.Table] = []

    def walk(x: Any) -> None:
        if isinstance(x, pa.Table):
            found.append(x.select(BENCHMARK_ITEM_SCHEMA.names).cast(BENCHMARK_ITEM_SCHEMA))
        elif isinstance(x, Mapping):
            for v in x.values():
                walk(v)
        elif isinstance(x, Iterable) and not isinstance(x, (str, bytes)):
            for v in x:
                walk(v)
        else:
            raise TypeError(f"expected benchmark tables, got {type(x).__name__}")

    walk(tables)
    return pa.concat_tables(found) if found else BENCHMARK_ITEM_SCHEMA.empty_table()


def build_index(tables: Any, cfg: DecontaminateConfig) -> NgramIndex:
    """Index the n-grams of every item of ``cfg.splits`` in ``tables`` (what ``load_benchmark`` returns).

    ``tables``: a table, a list of them, ``{split: table}`` or ``{benchmark: {split: table}}``.
    Items are tokenised in chunks, so building a 100k-item index stays within a few hundred MB.
    """
    table = _flatten_tables(tables)
    table = table.filter(pc.is_in(table["split"], pa.array(cfg.splits, pa.string())))
    n_items = table.num_rows
    key_parts: list[np.ndarray] = []
    item_parts: list[np.ndarray] = []
    tokens = np.zeros(n_items, np.int64)
    ngrams = np.zeros(n_items, np.int64)
    for c0 in range(0, n_items, _INDEX_CHUNK):
        texts = table["text"].slice(c0, _INDEX_CHUNK)
        per_item, counts = item_ngram_hashes(texts, cfg.n, cfg.min_item_tokens)
        tokens[c0:c0 + len(counts)] = counts
        sizes = np.fromiter((len(h) for h in per_item), np.int64, count=len(per_item))
        ngrams[c0:c0 + len(counts)] = sizes
        if sizes.sum():
            key_parts.append(np.concatenate(per_item))
            item_parts.append(np.repeat(np.arange(c0, c0 + len(counts), dtype=np.int32), sizes))
    keys = np.concatenate(key_parts) if key_parts else np.zeros(0, np.uint64)
    item = np.concatenate(item_parts) if item_parts else np.zeros(0, np.int32)
    order = np.argsort(keys, kind="stable")
    keys, item = keys[order], item[order]
    short = tokens < cfg.n
    lengths = tuple(sorted({cfg.n} | {int(t) for t in np.unique(tokens[short & (tokens >= cfg.min_item_tokens)])}))
    skipped: dict[str, int] = {}
    for b in table["benchmark"].unique().to_pylist():
        sel = (pc.equal(table["benchmark"], b).to_numpy(zero_copy_only=False)) & (ngrams == 0)
        skipped[b] = int(sel.sum())
    items = table.select(["benchmark", "split", "item_id"]).append_column(
        "tokens", pa.array(tokens, pa.int64())).append_column("ngrams", pa.array(ngrams, pa.int64()))
    return NgramIndex(n=cfg.n, lengths=lengths, keys=keys, item=item, items=items.combine_chunks(),
                      skipped_short=skipped)
