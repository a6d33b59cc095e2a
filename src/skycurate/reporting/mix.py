"""The mixture chart: per source, tokens planned vs achieved and how many passes over it that is."""

from __future__ import annotations

from typing import Any

from skycurate.reporting import figure_png


def mix_chart_png(per_source: dict[str, dict[str, Any]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_source)
    planned = [per_source[n]["target_tokens"] for n in names]
    achieved = [per_source[n]["achieved_tokens"] for n in names]
    available = [per_source[n]["available_tokens"] for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(names) + 2), 3.8))
    x = range(len(names))
    ax.bar([i - 0.27 for i in x], available, width=0.27, color="#CCCCCC", label="held (after filters)")
    ax.bar(list(x), planned, width=0.27, color="#4C72B0", label="planned")
    ax.bar([i + 0.27 for i in x], achieved, width=0.27, color="#55A868", label="achieved")
    for i, n in enumerate(names):
        ax.annotate(f"{per_source[n]['epochs_achieved']:.2f} ep\n{per_source[n]['share_achieved']:.1%}",
                    (i + 0.27, achieved[i]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), names)
    ax.set_ylabel("tokens")
    ax.legend(fontsize=8)
    return figure_png(fig, title)
