"""Charts of a CoT selection: how hard the prompts were, and which chain lengths were kept per bucket."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skycurate.reporting import figure_png

KEPT_COLOR = "#4C72B0"
REJECTED_COLOR = "#DD8452"
BUCKET_COLORS = ("#55A868", "#CCB974", "#C44E52", "#8172B3", "#64B5CD", "#937860")
_COLUMNS = ("prompt_id", "pass_rate", "difficulty", "bucket", "token_budget", "completion_tokens", "selected")


def _columns(samples: Any) -> dict[str, list]:
    if hasattr(samples, "column_names"):  # a pyarrow Table (output of stages.cot.select.select_chains)
        return {c: samples[c].to_pylist() for c in _COLUMNS}
    rows: Sequence[dict] = list(samples)
    return {c: [r.get(c) for r in rows] for c in _COLUMNS}


def cot_charts_png(samples: Any, title: str = "CoT selection") -> bytes:
    """PNG: pass rate over prompts (stacked by difficulty bucket), then per bucket the chain-length
    histograms of kept vs rejected chains with the bucket's token budget as a dashed line.

    ``samples``: the per-sample output of ``select_chains`` (a pyarrow Table, or dicts with its
    columns prompt_id, pass_rate, difficulty, bucket, token_budget, completion_tokens, selected).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    c = _columns(samples)
    prompts: dict[Any, tuple[float, str, float]] = {}
    for pid, pr, d, b in zip(c["prompt_id"], c["pass_rate"], c["difficulty"], c["bucket"]):
        prompts.setdefault(pid, (pr, b, d))
    # buckets in order of difficulty (their lowest difficulty seen)
    lowest: dict[str, float] = {}
    for pr, b, d in prompts.values():
        lowest[b] = min(lowest.get(b, 2.0), d if d is not None else 2.0)
    buckets = sorted(lowest, key=lambda b: (lowest[b], str(b)))
    colors = {b: BUCKET_COLORS[i % len(BUCKET_COLORS)] for i, b in enumerate(buckets)}

    fig, axes = plt.subplots(1 + max(1, len(buckets)), 1, figsize=(7.5, 2.7 * (1 + max(1, len(buckets)))),
                             squeeze=False)
    ax = axes[0][0]
    bins = np.linspace(0, 1, 21)
    if buckets:
        data = [[pr for pr, b, _ in prompts.values() if b == bk and pr is not None] for bk in buckets]
        ax.hist(data, bins=bins, stacked=True, color=[colors[b] for b in buckets],
                label=[f"{b} (n={len(v)})" for b, v in zip(buckets, data)])
        ax.legend(fontsize=8, title="bucket", title_fontsize=8)
    n_without = len({p for p, s in zip(c["prompt_id"], c["selected"]) if s} ^ set(prompts))
    ax.set_title(f"pass rate over {len(prompts):,} prompts ({n_without:,} left without a chain)", fontsize=9)
    ax.set_xlabel("pass rate (correct / samples)")
    ax.set_ylabel("prompts")

    for ax, bk in zip(axes[1:, 0], buckets or [None]):
        rows = [(t, s, bud) for t, s, bud, b in zip(c["completion_tokens"], c["selected"], c["token_budget"],
                                                      c["bucket"]) if b == bk and t is not None]
        kept = np.array([t for t, s, _ in rows if s], dtype=float)
        rejected = np.array([t for t, s, _ in rows if not s], dtype=float)
        budget = next((bud for _, _, bud in rows if bud is not None), None)
        values = [v for v in (kept, rejected) if v.size]
        if values:
            hi = max(float(v.max()) for v in values)
            hi = max(hi, float(budget or 0)) * 1.05 or 1.0
            edges = np.linspace(0, hi, 31)
            ax.hist(rejected, bins=edges, color=REJECTED_COLOR, alpha=0.6, label=f"rejected (n={rejected.size:,})")
            ax.hist(kept, bins=edges, color=KEPT_COLOR, alpha=0.8, label=f"kept (n={kept.size:,})")
        if budget is not None:
            ax.axvline(budget, color="black", ls="--", lw=1.1, label=f"budget {budget:,} tokens")
        n_prompts = sum(1 for _, b, _ in prompts.values() if b == bk)
        ax.set_title(f"bucket {bk}: {n_prompts:,} prompts, chain length (completion tokens)", fontsize=9)
        ax.set_xlabel("completion tokens")
        ax.set_ylabel("chains")
        if values or budget is not None:
            ax.legend(fontsize=8)
    return figure_png(fig, title)
