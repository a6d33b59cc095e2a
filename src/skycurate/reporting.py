"""Charts people would rather look at than read: the stage funnel of a flow run."""

from __future__ import annotations

import io


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
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
