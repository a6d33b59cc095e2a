"""Charts people would rather look at than read: the stage funnel of a flow run.

Shared chart helpers live here (``figure_png``); charts of one domain go in a submodule (``cot``).
"""

from __future__ import annotations

import io


def figure_png(fig, title: str) -> bytes:
    """Title, tight layout, PNG bytes; the figure is closed (charts are made in long-lived processes)."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def funnel_chart_png(funnel: list[dict], title: str) -> bytes:
    """Horizontal bars: documents (and text MB, when known) left after each stage, losses labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s["stage"] for s in funnel]
    kept = [s["rows_out"] for s in funnel]
    lost = [s.get("rejected", 0) + s.get("quarantined", 0) for s in funnel]
    has_bytes = all(s.get("bytes_out") is not None for s in funnel)
    ncols = 2 if has_bytes else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 0.45 * len(stages) + 1.6), squeeze=False)
    y = list(range(len(stages)))[::-1]
    ax = axes[0][0]
    ax.barh(y, kept, color="#4C72B0", label="kept")
    ax.barh(y, lost, left=kept, color="#DD8452", alpha=0.8, label="removed here")
    for yi, k, lo in zip(y, kept, lost):
        ax.text(k + lo, yi, f" {k:,}" + (f"  (-{lo:,})" if lo else ""), va="center", fontsize=8)
    ax.set_yticks(y, stages)
    ax.set_xlabel("documents")
    ax.set_xlim(0, max([k + lo for k, lo in zip(kept, lost)] + [1]) * 1.35)
    ax.legend(loc="lower right", fontsize=8)
    if has_bytes:
        bx = axes[0][1]
        mb = [s["bytes_out"] / 1e6 for s in funnel]
        bx.barh(y, mb, color="#55A868")
        for yi, v in zip(y, mb):
            bx.text(v, yi, f" {v:,.2f}", va="center", fontsize=8)
        bx.set_yticks(y, [""] * len(y))
        bx.set_xlabel("MB of text kept")
        bx.set_xlim(0, max(mb + [0.001]) * 1.3)
    return figure_png(fig, title)


SPLIT_COLORS = {"train": "#4C72B0", "test": "#C44E52", "reference": "#55A868"}


def loss_distributions_png(rows: list[dict], summaries: list[dict], title: str) -> bytes:
    """Per-sample mean token loss of the train / test / reference splits, one panel per benchmark.

    ``rows``: dicts with ``benchmark``, ``split``, ``loss_mean``; ``summaries``: ``AuditSummary.to_dict()``
    of each benchmark (its split losses are drawn as dashed lines, Delta1/Delta2 in the panel title).
    A leaked test split shows up as the red histogram sitting left of the green one.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    benches = sorted({r["benchmark"] for r in rows})
    fig, axes = plt.subplots(len(benches) or 1, 1, figsize=(7, 2.8 * max(1, len(benches))), squeeze=False)
    by_bench = {s["benchmark"]: s for s in summaries}
    for ax, bench in zip(axes[:, 0], benches):
        values = {split: np.array([r["loss_mean"] for r in rows if r["benchmark"] == bench and r["split"] == split
                                   and r["loss_mean"] is not None]) for split in SPLIT_COLORS}
        present = [v for v in values.values() if v.size]
        if not present:
            continue
        lo, hi = min(float(v.min()) for v in present), max(float(v.max()) for v in present)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
        summary = by_bench.get(bench, {})
        for split, v in values.items():
            if not v.size:
                continue
            ax.hist(v, bins=bins, alpha=0.45, color=SPLIT_COLORS[split], label=f"{split} (n={v.size})")
            split_loss = (summary.get("splits") or {}).get(split)
            if split_loss and split_loss.get("loss") is not None:
                ax.axvline(split_loss["loss"], color=SPLIT_COLORS[split], ls="--", lw=1.2)
        d1, d2 = summary.get("delta1"), summary.get("delta2")
        parts = [bench]
        if d1 and d1.get("value") is not None:
            parts.append(f"Δ1 = L_test − L_ref = {d1['value']:+.3f}")
        if d2 and d2.get("value") is not None:
            parts.append(f"Δ2 = L_test − L_train = {d2['value']:+.3f}")
        flags = summary.get("flags") or {}
        if flags.get("test_leakage") or flags.get("train_split_training"):
            parts.append("FLAGGED")
        ax.set_title("   ".join(parts), fontsize=9)
        ax.set_xlabel("mean token loss per item (nats)")
        ax.set_ylabel("items")
        ax.legend(fontsize=8)
    return figure_png(fig, title)
