"""The risk-coverage curves of an evaluation (one panel per source), and their mean ± standard error over
the seeds of a results page, drawn with matplotlib and written atomically as PNG."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from argse.core.figures import pyplot, save_png

METRICS = {"balanced_error": "balanced error", "worst_group_error": "worst-group error"}
METHOD_STYLE = {"chow": ":", "plugin_balanced": "--", "plugin_worst": "-"}


# ---------------------------------------------------------------- risk-coverage curves


@dataclass
class Curve:
    """One (source, method) curve: x = test rejection rate, y per metric; ``se`` (over seeds) or ``bands`` (each
    point's [low, high] bootstrap interval) draws a band; ``empty`` marks the points where a group accepts nothing
    (its error counted as 1)."""

    x: list[float]
    y: dict[str, list[float]]
    se: dict[str, list[float]] | None = None
    empty: list[bool] = field(default_factory=list)
    bands: dict[str, list[list[float]]] | None = None

    def band(self, metric: str) -> tuple[list[float], list[float]] | None:
        """The band's lower and upper edge, or None."""
        if self.bands is not None:
            return [b[0] for b in self.bands[metric]], [b[1] for b in self.bands[metric]]
        if self.se is not None:
            y = self.y[metric]
            return ([m - s for m, s in zip(y, self.se[metric], strict=True)],
                    [m + s for m, s in zip(y, self.se[metric], strict=True)])  # fmt: skip
        return None


def rc_panels(curves: dict[tuple[str, str], Curve], path: Path, title: str, range_end: float) -> Path:
    """One column per source, one row per metric, one line per method; the end of the AURC range
    [0, ``range_end``] is drawn as a vertical line. Axes are shared, so panels compare at a glance."""
    plt = pyplot()
    sources = list(dict.fromkeys(s for s, _ in curves))
    methods = list(dict.fromkeys(m for _, m in curves))
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    fig, axes = plt.subplots(len(METRICS), len(sources), figsize=(max(8.0, 0.6 + 2.9 * len(sources)), 6.2),
                             sharex=True, sharey="row", squeeze=False)  # fmt: skip
    marked = False
    for (source, method), c in curves.items():
        for row, metric in enumerate(METRICS):
            ax = axes[row][sources.index(source)]
            y = c.y[metric]
            ax.plot(c.x, y, METHOD_STYLE.get(method, "-."), color=colors[method], marker="o", markersize=2.5,
                    label=method)  # fmt: skip
            if (band := c.band(metric)) is not None:
                ax.fill_between(c.x, *band, color=colors[method], alpha=0.2, linewidth=0)
            bad = [i for i, e in enumerate(c.empty) if e]
            if bad:
                ax.plot([c.x[i] for i in bad], [y[i] for i in bad], "x", color="red", markersize=6, zorder=5,
                        label="a group accepts nothing (error counted as 1)")  # fmt: skip
                marked = True
    for col, source in enumerate(sources):
        axes[0][col].set_title(source)
        axes[-1][col].set_xlabel("rejection rate (test)")
    for row, label in enumerate(METRICS.values()):
        axes[row][0].set_ylabel(label)
    for ax in (a for r in axes for a in r):
        ax.axvline(range_end, color="k", linestyle=(0, (1, 3)), linewidth=1,
                   label=f"end of the AURC range [0, {range_end:g}]")  # fmt: skip
        ax.grid(alpha=0.3)
    legend = {}
    for ax in (a for r in axes for a in r):
        legend.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    legend = dict(sorted(legend.items(), key=lambda kv: kv[0].startswith(("end of", "a group"))))  # methods first
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=min(len(legend), 3), fontsize=8)
    band = "; bands: ± standard error over seeds" if any(c.se is not None for c in curves.values()) else ""
    band = "; bands: bootstrap interval of each point" if any(c.bands is not None for c in curves.values()) else band
    fig.suptitle(f"{title}{band}" + ("; x: a group accepts nothing" if marked else ""), fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return save_png(fig, path)


def mean_curves(per_seed: list[dict[tuple[str, str], list[dict]]]) -> dict[tuple[str, str], Curve]:
    """Each (source, method)'s curve averaged over seeds point by point (the same target rates): mean test
    rejection rate, mean error and its standard error (0 for one seed)."""
    out = {}
    for key, first in per_seed[0].items():
        rows = [seed[key] for seed in per_seed]
        x = [sum(r[i]["rejection_rate"] for r in rows) / len(rows) for i in range(len(first))]
        y, se = {}, {}
        for metric in METRICS:
            points = [[r[i][metric] for r in rows] for i in range(len(first))]
            y[metric] = [sum(p) / len(p) for p in points]
            se[metric] = [standard_error(p) for p in points]
        empty = [any(min(r[i]["group_coverage"]) <= 0 for r in rows) for i in range(len(first))]
        out[key] = Curve(x, y, se, empty)
    return out


def standard_error(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))
