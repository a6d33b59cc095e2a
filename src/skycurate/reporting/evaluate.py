"""The chart of a benchmark evaluation: accuracy as grouped bars, models side by side per subject.

One panel per benchmark; its ``all`` group first, then the subjects. Also the pivot the CLI prints
(rows benchmark x subject, one column per model), so chart and table show the same cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skycurate.reporting import figure_png

MODEL_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C",
                "#CCB974", "#64B5CD")


def accuracy_pivot(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[tuple[str, str, dict[str, dict]]]]:
    """(models in order, [(benchmark, subject, {model: accuracy row})]) from ``eval/accuracy`` rows."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    cells: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["benchmark"], r["subject"]), {})[r["model"]] = r
    return models, [(b, s, by_model) for (b, s), by_model in cells.items()]


def accuracy_chart_png(rows: Sequence[dict[str, Any]], title: str = "benchmark accuracy") -> bytes:
    """PNG: per benchmark, accuracy (%) of each model per subject, the ``all`` group first; bars labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models, cells = accuracy_pivot(rows)
    benchmarks = list(dict.fromkeys(b for b, _, _ in cells))
    groups = {b: [(s, by_model) for bb, s, by_model in cells if bb == b] for b in benchmarks}
    widest = max((len(g) for g in groups.values()), default=1)
    size = (max(6.0, 1.1 + widest * (0.35 + 0.28 * len(models))), 3.2 * max(1, len(benchmarks)))
    fig, axes = plt.subplots(max(1, len(benchmarks)), 1, squeeze=False, figsize=size)
    width = 0.8 / max(1, len(models))
    for ax, bench in zip(axes[:, 0], benchmarks or [None]):
        subjects = groups.get(bench, [])
        x = np.arange(len(subjects))
        for k, model in enumerate(models):
            acc = [100 * (by.get(model, {}).get("accuracy") or 0.0) for _, by in subjects]
            bars = ax.bar(x + (k - (len(models) - 1) / 2) * width, acc, width, label=model,
                          color=MODEL_COLORS[k % len(MODEL_COLORS)])
            if len(subjects) * len(models) <= 40:
                ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
        ax.set_xticks(x, [f"{s}\n(n={max((by[m]['items'] for m in by), default=0)})" for s, by in subjects],
                      fontsize=8)
        ax.set_ylim(0, 112)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(str(bench or "no benchmark"), fontsize=9)
        if models and ax is axes[0, 0]:   # one legend, right of the first panel, clear of the bars
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="model", title_fontsize=7)
    return figure_png(fig, title)
