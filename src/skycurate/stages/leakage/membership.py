"""Model leakage audit: per-item membership scores and the Skywork-13B split-loss test.

Pure functions over ``TokenScores`` (from any ``TokenScorer``) and over the per-sample audit
table (``AUDIT_SAMPLE_SCHEMA``); only ``score_benchmark`` calls an engine.

Definitions (``lp`` = log-probs of the scored tokens of one text, ``n`` = their number):

- loss_sum = -sum(lp); loss_mean = loss_sum / n (nats/token).
- Min-K% Prob (Shi et al. 2024): mean of the ``max(1, floor(k * n))`` lowest ``lp``.
- Min-K%++ (Zhang et al. 2025): the same over z_t = (lp_t - mu_t) / sigma_t, where mu_t and
  sigma_t are the mean and std of log p over the vocabulary under the model's own distribution.
- zlib ratio (Carlini et al. 2021, "ratio of log-perplexity and zlib entropy"): loss_mean /
  len(zlib.compress(text.encode("utf-8"))) at zlib's default level (6); the byte length is of the
  whole text, also for truncated ones.
- Split loss L (Skywork-13B): micro-average over the split, sum(loss_sum) / sum(n), so long items
  weigh by their tokens; the macro-average (mean of loss_mean) is reported beside it.
- Delta1 = L_test - L_reference, Delta2 = L_test - L_train, each with a percentile bootstrap CI:
  items are resampled with replacement within each split independently and L recomputed.
- AUROC(a vs b, score): probability that an item of split ``a`` looks more "seen" than an item of
  split ``b`` (ties count 1/2), with each score signed so that higher = more likely seen.

Items without a scored token (empty after tokenisation, or one token without BOS) have null
metrics, are left out of L, the CIs and the AUROCs, and are counted (``n_unscored``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skycurate.connectors.llm.scoring import TokenScores
from skycurate.errors import StageContractError
from skycurate.schemas.leakage_audit import (
    AUDIT_SAMPLE_SCHEMA,
    MEMBERSHIP_SCORES,
    REFERENCE,
    TEST,
    TRAIN,
    AuditConfig,
)

if TYPE_CHECKING:
    from skycurate.connectors.llm.scoring import TokenScorer

# AUROC pairs: (split suspected seen, split it is compared with).
AUROC_PAIRS: tuple[tuple[str, str], ...] = ((TEST, REFERENCE), (TRAIN, REFERENCE), (TEST, TRAIN))
_BOOT_CELLS = 1 << 22   # resample indices held at once (~32 MB of int64)
_SIGMA_FLOOR = 1e-6


# --------------------------------------------------------------------------- per sample


@dataclass(frozen=True)
class SampleMetrics:
    """Membership scores of one text (NaN where undefined)."""

    n_tokens: int
    n_tokens_full: int
    n_scored: int
    truncated: bool
    loss_sum: float
    loss_mean: float
    min_k: float
    min_k_pp: float
    zlib_bytes: int
    zlib_ratio: float


def k_count(n: int, k: float) -> int:
    """How many of ``n`` tokens Min-K% averages: floor(k * n), at least 1 (the reference code's int())."""
    return max(1, int(k * n + 1e-9))


def min_k_prob(logprobs: np.ndarray, k: float) -> float:
    """Min-K% Prob: mean log-prob of the lowest k% tokens (higher = more likely seen)."""
    lp = np.asarray(logprobs, dtype=np.float64)
    if lp.size == 0:
        return math.nan
    return float(np.sort(lp)[:k_count(lp.size, k)].mean())


def token_zscores(logprobs: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Min-K%++ per-token scores (log p - mu) / sigma (sigma floored so a one-hot distribution stays finite)."""
    lp = np.asarray(logprobs, dtype=np.float64)
    return (lp - np.asarray(mu, dtype=np.float64)) / np.maximum(np.asarray(sigma, dtype=np.float64), _SIGMA_FLOOR)


def min_k_pp(logprobs: np.ndarray, mu: np.ndarray, sigma: np.ndarray, k: float) -> float:
    """Min-K%++: mean of the lowest k% of the per-token z-scores (higher = more likely seen)."""
    z = token_zscores(logprobs, mu, sigma)
    if z.size == 0:
        return math.nan
    return float(np.sort(z)[:k_count(z.size, k)].mean())


def zlib_bytes(text: str) -> int:
    return len(zlib.compress(text.encode("utf-8")))


def sample_metrics(scores: TokenScores, text: str, k: float = 0.2, minkpp: bool = True) -> SampleMetrics:
    """Every per-item score of one text from its token scores."""
    n = scores.n_scored
    zb = zlib_bytes(text)
    if n == 0:
        nan = math.nan
        return SampleMetrics(scores.n_tokens, scores.n_tokens_full, 0, scores.truncated, nan, nan, nan, nan, zb, nan)
    loss_sum = float(-np.sum(scores.logprobs, dtype=np.float64))
    loss_mean = loss_sum / n
    pp = min_k_pp(scores.logprobs, scores.mu, scores.sigma, k) if minkpp and scores.has_moments else math.nan
    return SampleMetrics(scores.n_tokens, scores.n_tokens_full, n, scores.truncated, loss_sum, loss_mean,
                         min_k_prob(scores.logprobs, k), pp, zb, loss_mean / zb if zb else math.nan)


def audit_table(model: str, benchmark: str, split: str, item_ids: Sequence[str], texts: Sequence[str],
                scores: Sequence[TokenScores], cfg: AuditConfig) -> pa.Table:
    """The per-sample audit rows (``AUDIT_SAMPLE_SCHEMA``) of one split; NaN metrics become null."""
    if not (len(item_ids) == len(texts) == len(scores)):
        raise StageContractError(f"audit {benchmark}/{split}: {len(item_ids)} ids, {len(texts)} texts and "
                                 f"{len(scores)} scores")
    rows = [sample_metrics(s, t, cfg.min_k, cfg.minkpp) for s, t in zip(scores, texts, strict=True)]
    n = len(rows)

    def col(name: str) -> list:
        return [getattr(r, name) for r in rows]

    def floats(name: str) -> pa.Array:
        values = np.array(col(name), dtype=np.float64)
        return pa.array(values, pa.float64(), mask=np.isnan(values))

    keep = cfg.keep_token_scores
    lp_col = [s.logprobs.astype(np.float32).tolist() if keep else None for s in scores]
    z_col = [token_zscores(s.logprobs, s.mu, s.sigma).astype(np.float32).tolist()
             if keep and cfg.minkpp and s.has_moments else None for s in scores]
    data = {
        "model": pa.array([model] * n, pa.string()),
        "benchmark": pa.array([benchmark] * n, pa.string()),
        "split": pa.array([split] * n, pa.string()),
        "item_id": pa.array([str(i) for i in item_ids], pa.string()),
        "n_tokens": pa.array(col("n_tokens"), pa.int32()),
        "n_tokens_full": pa.array(col("n_tokens_full"), pa.int32()),
        "n_scored": pa.array(col("n_scored"), pa.int32()),
        "truncated": pa.array(col("truncated"), pa.bool_()),
        "loss_sum": floats("loss_sum"),
        "loss_mean": floats("loss_mean"),
        "min_k": floats("min_k"),
        "min_k_pp": floats("min_k_pp"),
        "zlib_bytes": pa.array(col("zlib_bytes"), pa.int32()),
        "zlib_ratio": floats("zlib_ratio"),
        "token_logprobs": pa.array(lp_col, pa.list_(pa.float32())),
        "token_zscores": pa.array(z_col, pa.list_(pa.float32())),
    }
    return pa.table(data, schema=AUDIT_SAMPLE_SCHEMA)


def _item(item: Any, where: str) -> tuple[str, str]:
    """(item_id, text) from a pair, a mapping with those keys, or an object with those attributes."""
    if isinstance(item, (tuple, list)) and len(item) == 2:
        item_id, text = item
    elif isinstance(item, Mapping) and "item_id" in item and "text" in item:
        item_id, text = item["item_id"], item["text"]
    elif hasattr(item, "item_id") and hasattr(item, "text"):
        item_id, text = item.item_id, item.text
    else:
        raise StageContractError(f"audit {where}: an item must be (item_id, text) or have item_id and text, "
                                 f"got {type(item).__name__}")
    if not isinstance(text, str):
        raise StageContractError(f"audit {where}: item {item_id!r} has a {type(text).__name__} text, not str")
    return str(item_id), text


def score_benchmark(scorer: TokenScorer, benchmark: str, splits: Mapping[str, Sequence[Any]],
                    cfg: AuditConfig, model: str | None = None) -> pa.Table:
    """Score every item of every split with one engine call; the per-sample table (``AUDIT_SAMPLE_SCHEMA``).

    ``splits`` maps a split name (train / test / reference) to its items: ``(item_id, text)``
    pairs, dicts with ``item_id`` and ``text`` (``pa.Table.to_pylist()`` rows), or objects with
    those attributes. All splits go to the engine together so that length sorting packs batches
    across splits. ``model`` labels the rows (default: the scorer's model folder name).
    """
    ids: list[str] = []
    texts: list[str] = []
    bounds: list[tuple[str, int, int]] = []
    for split, items in splits.items():
        pairs = [_item(it, f"{benchmark}/{split}") for it in items]
        split_ids = [i for i, _ in pairs]
        if len(set(split_ids)) != len(split_ids):
            seen: set[str] = set()
            dup = next(i for i in split_ids if i in seen or seen.add(i))
            raise StageContractError(f"audit {benchmark}/{split}: item_id {dup!r} appears more than once")
        bounds.append((split, len(ids), len(ids) + len(split_ids)))
        ids.extend(split_ids)
        texts.extend(t for _, t in pairs)
    scores = scorer.score(texts) if texts else []
    name = model or scorer.model_name
    parts = [audit_table(name, benchmark, split, ids[lo:hi], texts[lo:hi], scores[lo:hi], cfg)
             for split, lo, hi in bounds]
    return pa.concat_tables(parts) if parts else AUDIT_SAMPLE_SCHEMA.empty_table()


# --------------------------------------------------------------------------- statistics


def micro_loss(loss_sum: np.ndarray, n_scored: np.ndarray) -> float:
    """Summed token cross-entropy / total tokens (NaN when there is no token)."""
    total = float(np.sum(n_scored))
    return float(np.sum(loss_sum, dtype=np.float64)) / total if total > 0 else math.nan


def bootstrap_micro_loss(loss_sum: np.ndarray, n_scored: np.ndarray, n_boot: int,
                         rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the micro-averaged loss (items resampled with replacement)."""
    loss_sum = np.asarray(loss_sum, dtype=np.float64)
    n_scored = np.asarray(n_scored, dtype=np.float64)
    n = loss_sum.size
    if n == 0:
        return np.full(n_boot, math.nan)
    reps = np.empty(n_boot)
    step = max(1, _BOOT_CELLS // n)
    for lo in range(0, n_boot, step):
        idx = rng.integers(0, n, size=(min(step, n_boot - lo), n))
        reps[lo:lo + idx.shape[0]] = loss_sum[idx].sum(axis=1) / n_scored[idx].sum(axis=1)
    return reps


def percentile_ci(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[~np.isnan(reps)]
    if reps.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + P(tie) / 2 (Mann-Whitney U); NaNs dropped."""
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    values = np.concatenate([pos, neg])
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0          # 1-based average rank of each distinct value
    ranks = mean_rank[inverse]
    u = ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


@dataclass(frozen=True)
class SplitLoss:
    """Skywork-13B loss of one split."""

    split: str
    n_items: int          # items with at least one scored token
    n_unscored: int       # items left out: empty after tokenisation / one token without BOS
    n_truncated: int
    n_tokens: int         # scored tokens (the denominator of loss)
    loss: float           # micro-average (nats/token)
    loss_macro: float     # mean of per-item loss_mean
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Delta:
    """A loss difference ``L_a - L_b`` with its bootstrap CI."""

    name: str
    a: str
    b: str
    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class AuditFlags:
    test_leakage: bool            # Delta1 below delta1_max (and its CI below 0)
    train_split_training: bool    # Delta2 above delta2_min (and its CI above 0)
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditSummary:
    """Everything the report shows for one model on one benchmark."""

    model: str
    benchmark: str
    splits: dict[str, SplitLoss]
    delta1: Delta | None
    delta2: Delta | None
    auroc: dict[str, dict[str, float]]    # "test_vs_reference" -> {"min_k": 0.93, ...}
    flags: AuditFlags
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN -> None) for manifests, ``--json`` and the report table."""
        return _clean(asdict(self))


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _one_group(table: pa.Table) -> tuple[str, str]:
    models = pc.unique(table["model"]).to_pylist()
    benches = pc.unique(table["benchmark"]).to_pylist()
    if len(models) != 1 or len(benches) != 1:
        raise StageContractError(f"audit summary needs one model and one benchmark, got models {models} and "
                                 f"benchmarks {benches} (use summarize_all)")
    return models[0], benches[0]


def _split_rows(table: pa.Table, split: str) -> pa.Table:
    return table.filter(pc.equal(table["split"], split))


def _scored(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False).astype(np.float64)   # nulls -> NaN


def _loss_arrays(rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(loss_sum, n_scored) of the rows with at least one scored token."""
    n_scored = _scored(rows["n_scored"])
    ok = n_scored > 0
    return _scored(rows["loss_sum"])[ok], n_scored[ok]


def _replicates(rows: pa.Table, split: str, cfg: AuditConfig) -> np.ndarray:
    """Bootstrap replicates of one split's loss; the stream depends only on (seed, split), so any
    subset of splits gives the same numbers."""
    rng = np.random.default_rng([cfg.seed, zlib.crc32(split.encode())])
    return bootstrap_micro_loss(*_loss_arrays(rows), cfg.bootstrap_samples, rng)


def split_losses(table: pa.Table, cfg: AuditConfig) -> dict[str, SplitLoss]:
    """Micro-averaged loss of each split present in ``table`` (one model, one benchmark), with CIs."""
    _one_group(table)
    out: dict[str, SplitLoss] = {}
    for split in sorted(pc.unique(table["split"]).to_pylist()):
        rows = _split_rows(table, split)
        scored_mask = _scored(rows["n_scored"]) > 0
        loss_sum, n_scored = _loss_arrays(rows)
        lo, hi = percentile_ci(_replicates(rows, split, cfg), cfg.confidence)
        macro = float(np.mean(_scored(rows["loss_mean"])[scored_mask])) if scored_mask.any() else math.nan
        out[split] = SplitLoss(split, int(scored_mask.sum()), int((~scored_mask).sum()),
                               int(pc.sum(rows["truncated"].cast(pa.int64())).as_py() or 0), int(n_scored.sum()),
                               micro_loss(loss_sum, n_scored), macro, lo, hi)
    return out


def loss_delta(table: pa.Table, a: str, b: str, cfg: AuditConfig, name: str | None = None) -> Delta | None:
    """``L_a - L_b`` with a bootstrap CI (splits resampled independently); None if a split is missing."""
    splits = set(pc.unique(table["split"]).to_pylist())
    if a not in splits or b not in splits:
        return None
    ra, rb = _split_rows(table, a), _split_rows(table, b)
    la, lb = micro_loss(*_loss_arrays(ra)), micro_loss(*_loss_arrays(rb))
    lo, hi = percentile_ci(_replicates(ra, a, cfg) - _replicates(rb, b, cfg), cfg.confidence)
    return Delta(name or f"L_{a} - L_{b}", a, b, la - lb, lo, hi)


def membership_aurocs(table: pa.Table, pairs: Sequence[tuple[str, str]] = AUROC_PAIRS) -> dict[str, dict[str, float]]:
    """AUROC of each membership score for telling split ``a`` (suspected seen) from split ``b``."""
    splits = set(pc.unique(table["split"]).to_pylist())
    out: dict[str, dict[str, float]] = {}
    for a, b in pairs:
        if a not in splits or b not in splits:
            continue
        ra, rb = _split_rows(table, a), _split_rows(table, b)
        out[f"{a}_vs_{b}"] = {score: auroc(sign * _scored(ra[score]), sign * _scored(rb[score]))
                              for score, sign in MEMBERSHIP_SCORES.items()}
    return out


def flags(delta1: Delta | None, delta2: Delta | None, cfg: AuditConfig) -> AuditFlags:
    """Apply the config thresholds (see ``AuditConfig``) to Delta1 and Delta2."""
    reasons: list[str] = []
    test_leak = train_trained = False
    if delta1 is not None and not math.isnan(delta1.value):
        test_leak = delta1.value < cfg.delta1_max and (not cfg.require_significant or delta1.ci_high < 0)
        if test_leak:
            reasons.append(f"Delta1 = L_test - L_ref = {delta1.value:+.3f} (CI {delta1.ci_low:+.3f}.."
                           f"{delta1.ci_high:+.3f}) < {cfg.delta1_max:+.3f}: the test split was likely trained on")
    if delta2 is not None and not math.isnan(delta2.value):
        train_trained = delta2.value > cfg.delta2_min and (not cfg.require_significant or delta2.ci_low > 0)
        if train_trained:
            reasons.append(f"Delta2 = L_test - L_train = {delta2.value:+.3f} (CI {delta2.ci_low:+.3f}.."
                           f"{delta2.ci_high:+.3f}) > {cfg.delta2_min:+.3f}: the train split was likely trained on")
    return AuditFlags(test_leak, train_trained, tuple(reasons))


def summarize(table: pa.Table, cfg: AuditConfig) -> AuditSummary:
    """Split losses, Delta1/Delta2 with CIs, membership AUROCs and flags of one model on one benchmark."""
    model, benchmark = _one_group(table)
    d1 = loss_delta(table, TEST, REFERENCE, cfg, "Delta1")
    d2 = loss_delta(table, TEST, TRAIN, cfg, "Delta2")
    settings = {"min_k": cfg.min_k, "bootstrap_samples": cfg.bootstrap_samples, "confidence": cfg.confidence,
                "seed": cfg.seed, "delta1_max": cfg.delta1_max, "delta2_min": cfg.delta2_min,
                "require_significant": cfg.require_significant, "add_bos": cfg.add_bos, "max_tokens": cfg.max_tokens}
    return AuditSummary(model, benchmark, split_losses(table, cfg), d1, d2, membership_aurocs(table),
                        flags(d1, d2, cfg), settings)


def summarize_all(table: pa.Table, cfg: AuditConfig) -> list[AuditSummary]:
    """``summarize`` for every (model, benchmark) in the table, sorted by both."""
    keys = sorted({(m, b) for m, b in zip(table["model"].to_pylist(), table["benchmark"].to_pylist(), strict=True)})
    out = []
    for m, b in keys:
        mask = pc.and_(pc.equal(table["model"], m), pc.equal(table["benchmark"], b))
        out.append(summarize(table.filter(mask), cfg))
    return out
