"""Corpus decontamination: find benchmark n-grams in corpus documents and cut them out.

- ``build_index`` (in ``ngram_index``, re-exported here): every indexed benchmark n-gram as a
  64-bit hash, in one sorted numpy array with a parallel array of item numbers (12 bytes per
  (n-gram, item) pair), so it pickles and broadcasts as a few flat buffers.
- ``scan_batch``: the pure per-batch function. GPT-3 mode cuts ``window_chars`` around every
  match out of the original text and keeps the fragments of at least ``min_fragment_chars``;
  a document cut in more than ``max_splits`` places, or with nothing left, is rejected.
  ``drop_document`` mode rejects any document with a match.
- ``decontaminate_on_spark``: the same function under ``mapInArrow``, the index broadcast once.
- ``summary``: per-benchmark contamination figures from Spark aggregations.

Cutting, precisely: a matched span runs from its first token's first character to its last
token's last character; ``window_chars`` more are removed on each side (clamped to the text),
and a cut edge that lands inside a word moves outwards to the nearest whitespace when one is
within 50 characters (so fragments do not start or end with half a word; Chinese text without
spaces is cut at the exact character). Overlapping or touching cuts merge; "splits" counts the
merged cuts. Fragments are stripped of surrounding whitespace, dropped when shorter than
``min_fragment_chars``, and the survivors joined with ``"\\n"``. A rejected document keeps its
original text in the annotated output (it goes to the rejected dataset, which shows a preview).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skycurate.schemas.leakage import (
    CONTAMINATION_SCHEMA,
    DECONTAMINATE_STAGE,
    REJECTED_SCHEMA,
    DecontaminateConfig,
    annotated_schema,
)
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE, pending_rows
from skycurate.stages.base import require_columns
from skycurate.stages.leakage.ngram_index import (  # noqa: F401 - build_index is re-exported
    NgramIndex,
    _flatten_tables,
    build_index,
)
from skycurate.stages.leakage.ngrams import Tokens, ngram_hashes, tokenize

if TYPE_CHECKING:
    from pyspark import StorageLevel
    from pyspark.sql import DataFrame

STAGE = DECONTAMINATE_STAGE
SNAP_CHARS = 50                # how far a cut edge may move to reach whitespace
_GROUP_CHARS = 8 << 20         # texts are tokenised in groups of about this many characters
_KIND = "_kind"
_MATCH_PREFIX = "_match_"


# ============================================================================================ scan


@dataclass
class _Hits:
    """All index hits of one group of texts: per hit, its text, first token, length and hash."""

    doc: np.ndarray
    first: np.ndarray
    length: np.ndarray
    hash: np.ndarray


def _find_hits(texts: pa.Array, index: NgramIndex) -> tuple[Tokens, _Hits]:
    """Tokens of ``texts`` and every n-gram position whose hash is in the index."""
    toks = tokenize(texts)
    grams = ngram_hashes(toks, index.n, tuple(L for L in index.lengths if L != index.n))
    firsts, lens, hashes = [], [], []
    for L, (h, first) in grams.items():
        at = index.contains(h)
        if len(at):
            firsts.append(first[at])
            hashes.append(h[at])
            lens.append(np.full(len(at), L, np.int64))
    if firsts:
        first = np.concatenate(firsts)
        docs = np.searchsorted(toks.offsets, first, side="right") - 1
        hits = _Hits(docs, first, np.concatenate(lens), np.concatenate(hashes))
    else:
        z = np.zeros(0, np.int64)
        hits = _Hits(z, z, z, np.zeros(0, np.uint64))
    return toks, hits


def _snap_left(text: str, pos: int) -> int:
    """Move a cut start left to just after whitespace, when it lands inside a word."""
    if pos <= 0 or text[pos - 1].isspace() or text[pos].isspace():
        return max(pos, 0)
    for j in range(pos - 1, max(pos - SNAP_CHARS, 0) - 1, -1):
        if text[j].isspace():
            return j + 1
    return pos


def _snap_right(text: str, pos: int) -> int:
    """Move a cut end right to the next whitespace, when it lands inside a word."""
    n = len(text)
    if pos >= n or text[pos].isspace() or text[pos - 1].isspace():
        return min(pos, n)
    for j in range(pos, min(pos + SNAP_CHARS, n)):
        if text[j].isspace():
            return j
    return pos


def cut_spans(text: str, spans: list[tuple[int, int]], cfg: DecontaminateConfig) -> tuple[list[str], int]:
    """GPT-3 cutting: (kept fragments, number of merged cuts) for matched character ``spans``."""
    merged: list[list[int]] = []
    for s, e in sorted(spans):                 # overlapping matches (consecutive n-grams) first
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    cuts: list[list[int]] = []
    for s, e in merged:
        a = _snap_left(text, max(0, s - cfg.window_chars))
        b = _snap_right(text, min(len(text), e + cfg.window_chars))
        if cuts and a <= cuts[-1][1]:
            cuts[-1][1] = max(cuts[-1][1], b)
        else:
            cuts.append([a, b])
    fragments, prev = [], 0
    for a, b in cuts + [[len(text), len(text)]]:
        frag = text[prev:a].strip()
        if frag and len(frag) >= cfg.min_fragment_chars:
            fragments.append(frag)
        prev = b
    return fragments, len(cuts)


def _longest_run(first: np.ndarray, length: np.ndarray) -> tuple[int, int, int]:
    """Longest stretch of tokens covered by a run of overlapping hits: (tokens, first token, last token).

    Consecutive matching n-grams (positions p, p+1, ...) overlap, so a run of r of them covers
    r + n - 1 tokens; a short item matched whole covers its own length.
    """
    order = np.argsort(first, kind="stable")
    best = (0, 0, 0)
    run_start = run_end = -1
    for p, L in zip(first[order].tolist(), length[order].tolist()):
        if run_start >= 0 and p <= run_end:
            run_end = max(run_end, p + L - 1)
        else:
            run_start, run_end = p, p + L - 1
        if run_end - run_start + 1 > best[0]:
            best = (run_end - run_start + 1, run_start, run_end)
    return best


def scan_batch(batch: pa.RecordBatch, index: NgramIndex, cfg: DecontaminateConfig
               ) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """(annotated batch, matches batch) for a batch of documents with ``id`` and ``text``.

    The annotated batch has every input row and column (``text`` cleaned in GPT-3 mode) plus
    ``contaminated``, ``leak_ngrams``, ``leak_chars_removed`` and the verdict columns. A row
    that an earlier stage rejected is not scanned (its decontamination columns are null) and
    keeps its verdict. Rows without a match keep their text unchanged, byte for byte.
    """
    require_columns(batch, STAGE, ("id", "text"))
    n_rows = batch.num_rows
    text = batch.column("text")
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        text = text.cast(pa.string())
    pending = np.array(pending_rows(batch), bool)
    todo = pending & pc.is_valid(text).to_numpy(zero_copy_only=False)
    contaminated = np.zeros(n_rows, bool)
    leak_ngrams = np.zeros(n_rows, np.int64)
    removed = np.zeros(n_rows, np.int64)
    reasons: list[str | None] = [None] * n_rows
    new_text: dict[int, str] = {}
    m_doc: list[str] = []
    m_bench: list[str] = []
    m_split: list[str] = []
    m_item: list[str] = []
    m_ngrams: list[int] = []
    m_span: list[int] = []
    m_text: list[str] = []
    ids = batch.column("id")
    items = index.items
    item_bench = items["benchmark"]
    item_split = items["split"]
    item_id = items["item_id"]

    rows = np.flatnonzero(todo)
    sizes = pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    for group in _groups(rows, sizes):
        sub = text.take(pa.array(group))
        toks, hits = _find_hits(sub, index)
        if len(hits.doc) == 0:
            continue
        which, item_rows = index.postings(hits.hash)
        order = np.argsort(hits.doc, kind="stable")
        bounds = np.searchsorted(hits.doc[order], np.arange(len(group) + 1))
        post_doc = hits.doc[which]
        porder = np.argsort(post_doc, kind="stable")
        pbounds = np.searchsorted(post_doc[porder], np.arange(len(group) + 1))
        for d in np.flatnonzero(np.diff(bounds)):
            row = int(group[d])
            sel = order[bounds[d]:bounds[d + 1]]
            original = sub[int(d)].as_py()
            first, length = hits.first[sel], hits.length[sel]
            starts, ends = toks.start[first], toks.end[first + length - 1]
            contaminated[row] = True
            leak_ngrams[row] = len(sel)
            if cfg.mode == "drop_document":
                reasons[row] = "contaminated"
                removed[row] = len(original)
            else:
                spans = sorted(set(zip(starts.tolist(), ends.tolist())))
                fragments, n_cuts = cut_spans(original, spans, cfg)
                if n_cuts > cfg.max_splits:
                    reasons[row] = f"contaminated:split>{cfg.max_splits}"
                    removed[row] = len(original)
                elif not fragments:
                    reasons[row] = "contaminated:nothing_left"
                    removed[row] = len(original)
                else:
                    new_text[row] = "\n".join(fragments)
                    removed[row] = len(original) - sum(len(f) for f in fragments)
            # One matches row per item: this document's postings, grouped by item.
            psel = porder[pbounds[d]:pbounds[d + 1]]
            hit_of, its = which[psel], item_rows[psel]
            by_item = np.argsort(its, kind="stable")
            hit_of, its = hit_of[by_item], its[by_item]
            cuts = np.flatnonzero(np.diff(its)) + 1
            doc_id = ids[row].as_py()
            for h_sel, it in zip(np.split(hit_of, cuts), its[np.concatenate([[0], cuts])].tolist()):
                span_tokens, t0, t1 = _longest_run(hits.first[h_sel], hits.length[h_sel])
                span = original[int(toks.start[t0]):int(toks.end[t1])]
                m_doc.append(None if doc_id is None else str(doc_id))
                m_bench.append(item_bench[it].as_py())
                m_split.append(item_split[it].as_py())
                m_item.append(item_id[it].as_py())
                m_ngrams.append(len(np.unique(hits.hash[h_sel])))
                m_span.append(span_tokens)
                m_text.append(span[:cfg.span_preview_chars])

    annotated = _annotate(batch, text, pending, contaminated, leak_ngrams, removed, reasons, new_text)
    matches = pa.RecordBatch.from_arrays(
        [pa.array(m_doc, pa.string()), pa.array(m_bench, pa.string()), pa.array(m_split, pa.string()),
         pa.array(m_item, pa.string()), pa.array(m_ngrams, pa.int64()), pa.array(m_span, pa.int64()),
         pa.array(m_text, pa.string())], schema=CONTAMINATION_SCHEMA)
    return annotated, matches


def _groups(rows: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Split ``rows`` into consecutive groups of about ``_GROUP_CHARS`` characters each."""
    if len(rows) == 0:
        return []
    block = np.cumsum(sizes[rows]) // _GROUP_CHARS
    return np.split(rows, np.flatnonzero(np.diff(block)) + 1)


def _annotate(batch: pa.RecordBatch, text: pa.Array, pending: np.ndarray, contaminated: np.ndarray,
              leak_ngrams: np.ndarray, removed: np.ndarray, reasons: list[str | None],
              new_text: dict[int, str]) -> pa.RecordBatch:
    schema = annotated_schema(batch.schema)
    if new_text:
        mask = np.zeros(batch.num_rows, bool)
        mask[list(new_text)] = True
        text = pc.replace_with_mask(text, pa.array(mask), pa.array([new_text[r] for r in sorted(new_text)], text.type))
    not_scanned = ~pending
    cols = {"text": text,
            "contaminated": pa.array(contaminated, mask=not_scanned),
            "leak_ngrams": pa.array(leak_ngrams, mask=not_scanned),
            "leak_chars_removed": pa.array(removed, mask=not_scanned)}
    names = batch.schema.names
    old_stage = batch.column(REJECT_STAGE).to_pylist() if REJECT_STAGE in names else [None] * batch.num_rows
    old_reason = batch.column(REJECT_REASON).to_pylist() if REJECT_REASON in names else [None] * batch.num_rows
    stages = [s if r is not None else (STAGE if new is not None else None)
              for s, r, new in zip(old_stage, old_reason, reasons)]
    cols[REJECT_STAGE] = pa.array(stages, pa.string())
    cols[REJECT_REASON] = pa.array([r if r is not None else new for r, new in zip(old_reason, reasons)], pa.string())
    arrays = [cols[f.name] if f.name in cols else batch.column(f.name) for f in schema]
    arrays = [a.cast(f.type) if a.type != f.type else a for a, f in zip(arrays, schema)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def scan_table(table: pa.Table, index: NgramIndex, cfg: DecontaminateConfig) -> tuple[pa.Table, pa.Table]:
    """``scan_batch`` over every batch of a table (tests, benchmarks, small corpora)."""
    ann, matches = [], []
    for batch in table.to_batches():
        a, m = scan_batch(batch, index, cfg)
        ann.append(a)
        matches.append(m)
    schema = annotated_schema(table.schema)
    return pa.Table.from_batches(ann, schema=schema), pa.Table.from_batches(matches, schema=CONTAMINATION_SCHEMA)


def rejected_rows_arrow(annotated: pa.Table, cfg: DecontaminateConfig) -> pa.Table:
    """The documents this stage rejected, as ``REJECTED_SCHEMA`` rows."""
    rej = annotated.filter(pc.fill_null(pc.equal(annotated[REJECT_STAGE], STAGE), False))
    text = pc.fill_null(rej["text"], "")
    return pa.table({"id": rej["id"].cast(pa.string()), REJECT_STAGE: rej[REJECT_STAGE],
                     REJECT_REASON: rej[REJECT_REASON], "leak_ngrams": rej["leak_ngrams"],
                     "text_chars": pc.utf8_length(text).cast(pa.int64()),
                     "text_preview": pc.utf8_slice_codeunits(text, 0, cfg.rejected_preview_chars)},
                    schema=REJECTED_SCHEMA)


# ============================================================================================ Spark


def _union_schema(ann: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(_KIND, pa.int8())] + [f.with_nullable(True) for f in ann]
                     + [pa.field(_MATCH_PREFIX + f.name, f.type) for f in CONTAMINATION_SCHEMA])


def _to_union(batch: pa.RecordBatch, kind: int, schema: pa.Schema) -> pa.RecordBatch:
    """An annotated (kind 0) or matches (kind 1) batch as rows of the union schema."""
    arrays = [pa.array(np.full(batch.num_rows, kind, np.int8))]
    for f in schema:
        if f.name == _KIND:
            continue
        is_match = f.name.startswith(_MATCH_PREFIX)
        src = (f.name[len(_MATCH_PREFIX):] if is_match else None) if kind == 1 else (None if is_match else f.name)
        arrays.append(batch.column(src) if src is not None else pa.nulls(batch.num_rows, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _scan_partition(batches: Iterator[pa.RecordBatch], index_bc: Any, cfg: DecontaminateConfig,
                    schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    index = index_bc.value   # deserialised once per Python worker, then cached there
    for batch in batches:
        annotated, matches = scan_batch(batch, index, cfg)
        yield _to_union(annotated, 0, schema)
        if matches.num_rows:
            yield _to_union(matches, 1, schema)


def scan_on_spark(df: DataFrame, index: NgramIndex, cfg: DecontaminateConfig) -> DataFrame:
    """One ``mapInArrow`` pass producing annotated documents and match rows in one DataFrame.

    ``mapInArrow`` has one output schema, so both outputs share a union schema: ``_kind`` 0
    rows carry the annotated document columns, ``_kind`` 1 rows the ``_match_*`` columns.
    One pass, not two: tokenising and looking up every corpus n-gram is the scan's cost, and a
    second pass (for the matches alone) would pay it and Spark's Arrow round trip again; match
    rows are few, so the union adds almost nothing. The index is broadcast once
    (``sc.broadcast``, ~13 bytes per indexed n-gram: ~50 MB for 100k GSM8K-sized items): each
    executor fetches it once and each Python worker unpickles it once per session, for every
    action on the result. In a closure it would be pickled again for every job (PySpark
    broadcasts a pickled command over 1 MB itself, but per job).
    """
    from skycurate.spark import arrow_schema, spark_schema

    schema = _union_schema(annotated_schema(arrow_schema(df)))
    index_bc = df.sparkSession.sparkContext.broadcast(index)
    fn = partial(_scan_partition, index_bc=index_bc, cfg=cfg, schema=schema)
    return df.mapInArrow(fn, spark_schema(schema))


def split_scan(scanned: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(annotated documents, contamination rows) of a ``scan_on_spark`` result."""
    from pyspark.sql import functions as F

    doc_cols = [c for c in scanned.columns if c != _KIND and not c.startswith(_MATCH_PREFIX)]
    annotated = scanned.filter(F.col(_KIND) == 0).select(*doc_cols)
    matches = scanned.filter(F.col(_KIND) == 1).select(
        *[F.col(_MATCH_PREFIX + f.name).alias(f.name) for f in CONTAMINATION_SCHEMA])
    return annotated, matches


def decontaminate_on_spark(df: DataFrame, index: NgramIndex, cfg: DecontaminateConfig, persist: bool = True,
                           storage_level: StorageLevel | None = None) -> tuple[DataFrame, DataFrame]:
    """(annotated_df, matches_df) from one scan of ``df`` (columns ``id``, ``text``, any others).

    Both come from the same ``scan_on_spark`` DataFrame, persisted (``storage_level``, default
    ``MEMORY_AND_DISK``) so that writing the kept, rejected and matches datasets scans the corpus
    once, not three times; nothing is collected to the driver. Release it with
    ``spark.catalog.clearCache()``, or call ``scan_on_spark`` + ``split_scan`` yourself to hold
    the persisted parent. ``persist=False``: each action rescans.
    """
    from pyspark import StorageLevel

    scanned = scan_on_spark(df, index, cfg)
    if persist:
        scanned = scanned.persist(storage_level or StorageLevel.MEMORY_AND_DISK)
    return split_scan(scanned)


def rejected_rows(annotated_df: DataFrame, cfg: DecontaminateConfig) -> DataFrame:
    """Spark version of ``rejected_rows_arrow``: this stage's rejected documents, ``REJECTED_SCHEMA``."""
    from pyspark.sql import functions as F

    text = F.coalesce(F.col("text"), F.lit(""))
    return annotated_df.filter(F.col(REJECT_STAGE) == STAGE).select(
        F.col("id").cast("string").alias("id"), REJECT_STAGE, REJECT_REASON, "leak_ngrams",
        F.length(text).cast("long").alias("text_chars"),
        F.substring(text, 1, cfg.rejected_preview_chars).alias("text_preview"))


def _items_per_benchmark(tables: Any) -> dict[str, int]:
    if isinstance(tables, NgramIndex):
        t = tables.items
    else:
        t = _flatten_tables(tables)
    counts = t.group_by("benchmark").aggregate([("item_id", "count")]).to_pylist()
    return {r["benchmark"]: int(r["item_id_count"]) for r in counts}


def summary(matches_df: DataFrame, annotated_df: DataFrame, tables: Any) -> list[dict[str, Any]]:
    """Per benchmark: items, items contaminated (and %), documents touched (and % of the corpus),
    documents rejected and characters removed.

    ``tables``: the ``NgramIndex`` (its items are exactly the indexed ones) or the benchmark
    tables that were indexed, as ``build_index`` takes them (then every split given counts).
    A document touched by two benchmarks counts for both. Only per-benchmark aggregates and
    the corpus row count reach the driver.
    """
    from pyspark.sql import functions as F

    items = _items_per_benchmark(tables)
    corpus_docs = annotated_df.count()
    per_item = (matches_df.groupBy("benchmark")
                .agg(F.countDistinct("split", "item_id").alias("items_contaminated"),
                     F.countDistinct("doc_id").alias("docs_touched"))
                .collect())
    touched = matches_df.select("benchmark", "doc_id").distinct()
    docs = (annotated_df.filter(F.col("contaminated"))
            .select(F.col("id").cast("string").alias("doc_id"), "leak_chars_removed", REJECT_STAGE))
    per_doc = (touched.join(docs, "doc_id")
               .groupBy("benchmark")
               .agg(F.sum(F.when(F.col(REJECT_STAGE) == STAGE, 1).otherwise(0)).alias("docs_rejected"),
                    F.sum("leak_chars_removed").alias("chars_removed"))
               .collect())
    a = {r["benchmark"]: r for r in per_item}
    b = {r["benchmark"]: r for r in per_doc}
    out = []
    for name in sorted(set(items) | set(a)):
        n_items = items.get(name, 0)
        hit = a[name]["items_contaminated"] if name in a else 0
        touched_docs = a[name]["docs_touched"] if name in a else 0
        out.append({
            "benchmark": name,
            "items": n_items,
            "items_contaminated": int(hit),
            "pct_items_contaminated": 100.0 * hit / n_items if n_items else 0.0,
            "docs_touched": int(touched_docs),
            "pct_docs_touched": 100.0 * touched_docs / corpus_docs if corpus_docs else 0.0,
            "docs_rejected": int(b[name]["docs_rejected"] or 0) if name in b else 0,
            "chars_removed": int(b[name]["chars_removed"] or 0) if name in b else 0,
        })
    return out
