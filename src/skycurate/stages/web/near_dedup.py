"""Near-duplicate removal: MinHash LSH buckets -> candidate pairs -> components -> one survivor each.

A Spark DataFrame job that never collects documents, edges or components to the driver:

1. explode every active document's ``minhash_bands`` into (band, hash) rows;
2. group them into buckets; a bucket with two or more members links its smallest id to each
   other member (a star, not all n^2 pairs) -- a million-member bucket costs a million edges;
3. optionally keep only pairs whose Jaccard similarity, estimated from the full signatures,
   reaches ``verify_threshold``. A star edge that fails verification would cut a member off
   even when it is close to another member, so when verifying, buckets of up to
   ``verify_all_pairs_up_to`` members compare all their pairs (small buckets are where
   edited near-duplicates live; huge buckets are templated copies, close to their root);
4. connected components (``components.py``); ``cluster_id`` = the component's smallest id,
   a singleton's own id;
5. per cluster one deterministic survivor -- the longest text, ties to the smallest id; the
   others get ``reject_stage = "near_dedup"``, ``reject_reason = "near_duplicate of <id>"``.

Rows that are already rejected pass through untouched and are not indexed. Rows with null
bands (no shingles: empty or punctuation-only text) are kept as singletons; exact dedup
handles them.

Incremental mode: ``previous_index`` holds the documents kept by an earlier version (``id``,
``minhash_bands`` and, when verifying, ``minhash_sig``). They join the graph as nodes that
always win: a new document in a component with a previous one is rejected as
``near_duplicate of <previous id> (previous version)``; previous documents are never output.
Graph keys are prefixed (``0:`` previous, ``1:`` new) so that a previous document is always
its component's minimum and an id reused across versions is still two nodes.

Bands (or signatures) of another length than ``cfg`` asks for -- made with another config --
fail the job with a ``StageContractError``: signatures of different configs must never meet.

``df`` is read twice (the graph, then the annotated rows): give it a DataFrame read from
Parquet or persisted, or its upstream stages run twice. The ``index`` is built from the
checkpointed graph nodes and does not read ``df`` again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from skycurate.errors import StageContractError
from skycurate.schemas.web import CLUSTER_FIELD
from skycurate.schemas.web_dedup import (
    MINHASH_BANDS_FIELD,
    MINHASH_SIG_FIELD,
    NEAR_DEDUP_STAGE,
    MinHashConfig,
)
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE
from skycurate.stages.web.components import connected_components, materialize

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

BANDS = MINHASH_BANDS_FIELD.name
SIG = MINHASH_SIG_FIELD.name
CLUSTER = CLUSTER_FIELD.name
_PREV, _NEW = "0:", "1:"


@dataclass(frozen=True)
class NearDedupResult:
    """``annotated``: every input row + ``cluster_id`` + verdicts (same row count as the input).
    ``index``: ``id, minhash_bands, minhash_sig`` of the new documents kept, to publish with the
    version; the index of everything kept so far is the previous index plus this one.
    """

    annotated: "DataFrame"
    index: "DataFrame"


def _require(df: "DataFrame", columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise StageContractError(f"near_dedup needs column(s) {', '.join(missing)} in {what}; "
                                 f"it has {', '.join(df.columns)}")


def _strip(key: "Column") -> "Column":
    from pyspark.sql import functions as F

    return F.substring(key, len(_NEW) + 1, 1 << 30)


def _jaccard_estimate(a: "Column", b: "Column") -> "Column":
    """Fraction of equal positions of two signatures (null if either is missing)."""
    from pyspark.sql import functions as F

    same = F.aggregate(F.zip_with(a, b, lambda x, y: F.when(x == y, 1).otherwise(0)), F.lit(0),
                       lambda acc, x: acc + x)
    return F.when(F.size(a) == F.size(b), same / F.size(a))


def _candidate_edges(nodes: "DataFrame", all_pairs_up_to: int) -> "DataFrame":
    """Distinct (src, dst) candidate pairs of keys from the LSH buckets.

    A bucket of at most ``all_pairs_up_to`` members gives all its pairs (``src < dst``); a
    larger one links its smallest key to each other member (a star: n - 1 edges, not n^2/2).
    Without verification every bucket is a star (``all_pairs_up_to = 1``): the components
    are the same.
    """
    from pyspark.sql import functions as F

    exploded = nodes.select("key", F.posexplode(BANDS).alias("band", "hash"))
    buckets = (exploded.groupBy("band", "hash")
               .agg(F.min("key").alias("root"), F.max("key").alias("top"), F.count("*").alias("n"))
               # two or more members, at least one of them new ("1:" sorts after "0:")
               .where((F.col("n") >= 2) & F.col("top").startswith(_NEW))
               .drop("top"))
    members = exploded.join(buckets, ["band", "hash"])
    star = (members.where((F.col("n") > all_pairs_up_to) & (F.col("key") != F.col("root")))
            .select(F.col("root").alias("src"), F.col("key").alias("dst")))
    small = members.where(F.col("n") <= all_pairs_up_to).select("band", "hash", "key")
    pairs = (small.alias("l").join(small.alias("r"), ["band", "hash"])
             .where(F.col("l.key") < F.col("r.key"))
             .select(F.col("l.key").alias("src"), F.col("r.key").alias("dst")))
    # Two previous documents were both kept before: never link them directly.
    both_prev = F.col("src").startswith(_PREV) & F.col("dst").startswith(_PREV)
    return star.unionByName(pairs).where(~both_prev).distinct()


def _verified(edges: "DataFrame", nodes: "DataFrame", threshold: float) -> "DataFrame":
    from pyspark.sql import functions as F

    sig = nodes.select("key", SIG)
    pairs = (edges.join(sig.withColumnRenamed("key", "src").withColumnRenamed(SIG, "s1"), "src")
             .join(sig.withColumnRenamed("key", "dst").withColumnRenamed(SIG, "s2"), "dst"))
    return pairs.where(_jaccard_estimate(F.col("s1"), F.col("s2")) >= F.lit(threshold)).select("src", "dst")


_MISMATCH = "near_dedup: bands or signatures made with another MinHashConfig"


def _checked_key(cfg: MinHashConfig) -> "Column":
    """The node key, or a task failure for a row whose bands/signature do not fit ``cfg``.

    Checked while the nodes are materialised (no extra pass): signatures from different
    configs must never be mixed in one index.
    """
    from pyspark.sql import functions as F

    bad = F.size(BANDS) != cfg.bands
    need = f"{cfg.bands} bands"
    if cfg.verify_threshold is not None:
        bad = bad | F.col(SIG).isNull() | (F.size(SIG) != cfg.num_perm)
        need += f" and {cfg.num_perm}-value signatures"
    message = F.concat(F.lit(f"{_MISMATCH} (need {need}) <<"), F.col("key"), F.lit(">>"))
    return F.when(bad, F.raise_error(message)).otherwise(F.col("key"))


def _materialize_nodes(nodes: "DataFrame", cfg: MinHashConfig) -> "DataFrame":
    import re

    try:
        return materialize(nodes.withColumn("key", _checked_key(cfg)))
    except Exception as e:  # Spark wraps the task failure in its own exception: keep only our message
        found = re.search(re.escape(_MISMATCH) + r" \((need [^)]*)\) <<(.*?)>>", str(e))
        if not found:
            raise
        need, key = found.groups()
        where = "the previous index" if key.startswith(_PREV) else "the input"
        raise StageContractError(f"{_MISMATCH}: {need}, and row {key[len(_NEW):]!r} of {where} does not; "
                                 "compute them with the same config") from None


def near_dedup(df: "DataFrame", cfg: MinHashConfig, previous_index: "DataFrame | None" = None) -> NearDedupResult:
    """Cluster near-duplicates of ``df`` (after the ``minhash`` stage) and reject all but one per cluster."""
    from pyspark.sql import functions as F

    verify = cfg.verify_threshold is not None
    _require(df, ("id", "text", BANDS) + ((SIG,) if verify else ()), "the input")
    if previous_index is not None:
        _require(previous_index, ("id", BANDS) + ((SIG,) if verify else ()), "the previous index")

    null_str = F.lit(None).cast("string")
    had_verdicts = REJECT_REASON in df.columns
    if not had_verdicts:
        df = df.withColumn(REJECT_STAGE, null_str).withColumn(REJECT_REASON, null_str)
    active = F.col(REJECT_REASON).isNull() & F.col(BANDS).isNotNull()
    key = F.concat(F.lit(_NEW), F.col("id"))

    sig_col = F.col(SIG) if verify else F.lit(None).cast("array<bigint>")
    nodes = df.where(active).select(key.alias("key"), F.col(BANDS), sig_col.alias(SIG),
                                    F.length("text").alias("length"))
    if previous_index is not None:
        prev_sig = F.col(SIG) if verify else F.lit(None).cast("array<bigint>")
        nodes = nodes.unionByName(previous_index.where(F.col(BANDS).isNotNull()).select(
            F.concat(F.lit(_PREV), F.col("id")).alias("key"), F.col(BANDS), prev_sig.alias(SIG),
            F.lit(None).cast("int").alias("length")))
    # The graph reads the nodes several times: compute them (and the upstream stages) once.
    nodes = _materialize_nodes(nodes, cfg)

    edges = _candidate_edges(nodes, cfg.verify_all_pairs_up_to if verify else 1)
    if verify:
        edges = _verified(edges, nodes, cfg.verify_threshold)
    components = connected_components(edges)

    # Per component without a previous document: the longest text wins, ties to the smallest id.
    members = (components.where(F.col("node").startswith(_NEW))
               .join(nodes.select(F.col("key").alias("node"), "length"), "node"))
    survivors = (members.where(F.col("component").startswith(_NEW)).groupBy("component")
                 .agg(F.min(F.struct((-F.col("length")).alias("neg_length"), F.col("node"))).alias("best"))
                 .select("component", F.col("best.node").alias("survivor")))
    assignment = members.select("node", "component").join(survivors, "component", "left").select(
        F.col("node").alias("_nd_node"), F.col("component").alias("_nd_component"),
        F.col("survivor").alias("_nd_survivor"))

    out = df.join(assignment, key == F.col("_nd_node"), "left")
    is_active = active
    component, survivor = F.col("_nd_component"), F.col("_nd_survivor")
    from_previous = component.startswith(_PREV)
    rejected_now = is_active & component.isNotNull() & (from_previous | (survivor != F.col("_nd_node")))
    reason = (F.when(from_previous, F.concat(F.lit("near_duplicate of "), _strip(component),
                                             F.lit(" (previous version)")))
              .otherwise(F.concat(F.lit("near_duplicate of "), _strip(survivor))))
    # Rows rejected upstream have no cluster; rows without bands are singletons.
    cluster = F.when(F.col(REJECT_REASON).isNull(), F.coalesce(_strip(component), F.col("id")))

    columns = []
    for name in df.columns:
        if name == REJECT_STAGE:
            columns.append(F.when(rejected_now, F.lit(NEAR_DEDUP_STAGE)).otherwise(F.col(REJECT_STAGE)).alias(name))
        elif name == REJECT_REASON:
            columns.append(F.when(rejected_now, reason).otherwise(F.col(REJECT_REASON)).alias(name))
        elif name == CLUSTER:
            continue
        else:
            columns.append(F.col(name))
    columns.append(cluster.alias(CLUSTER))
    annotated = out.select(*columns)
    if had_verdicts:
        order = [c for c in df.columns if c != CLUSTER] + [CLUSTER]
    else:
        order = [c for c in df.columns if c not in (REJECT_STAGE, REJECT_REASON, CLUSTER)] + [
            CLUSTER, REJECT_STAGE, REJECT_REASON]
    annotated = annotated.select(*order)

    # The index comes from the checkpointed nodes, so publishing it does not read ``df`` again.
    losers = assignment.where(F.col("_nd_component").startswith(_PREV)
                              | (F.col("_nd_survivor") != F.col("_nd_node"))).select("_nd_node")
    index = (nodes.where(F.col("key").startswith(_NEW))
             .join(losers, F.col("key") == F.col("_nd_node"), "left_anti")
             .select(_strip(F.col("key")).alias("id"), F.col(BANDS), F.col(SIG)))
    return NearDedupResult(annotated=annotated, index=index)
