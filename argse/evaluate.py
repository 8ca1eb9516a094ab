"""Selective-prediction report for experts and the gated mixture.

``python -m argse.evaluate --config RUN.yaml --sources ce,gating --methods chow,plugin_balanced,plugin_worst``
fits each rejector on ``tune`` for every target rejection rate, evaluates it on ``test`` and writes
report.json, rc_curves.csv, rc_curves.png and summary.md under outputs/<run>/evaluation/.
"""

from __future__ import annotations

import csv
import io as pyio
import time
from dataclasses import asdict

import torch
from rich.table import Table

from argse import cli, io
from argse.data import head_tail_groups
from argse.errors import ArgseError
from argse.logits import LogitsFile, available_sources, load_sources
from argse.selective import METHODS, aurc, evaluate_rule, fit_rule, group_view

# Extra sweep points past the configured grid, so that AURC over [0, 1] rests on measured errors up to 0.95.
AURC_TAIL = (0.85, 0.9, 0.95)
AURC_RANGES = {"0-0.8": (0.0, 0.8), "0-1": (0.0, 1.0)}
AURC_COLUMNS = ["balanced_error@0-0.8", "worst_group_error@0-0.8", "balanced_error@0-1", "worst_group_error@0-1"]


def aurc_markdown(aurcs: dict[tuple[str, str], dict[str, float]]) -> str:
    """AURC table, one row per (source, method)."""
    lines = ["| source | method | " + " | ".join(AURC_COLUMNS) + " |", "|---|---|" + "---|" * len(AURC_COLUMNS)]
    lines += [f"| {s} | {m} | " + " | ".join(f"{a[c]:.4f}" for c in AURC_COLUMNS) + " |" for (s, m), a in aurcs.items()]
    return "\n".join(lines) + "\n"


def sweep(tune: LogitsFile, test: LogitsFile, method: str, grid: list[float], cfg, tail_max_count: int) -> list[dict]:
    groups = head_tail_groups(torch.tensor(tune.class_counts), tail_max_count)
    class_group, k = groups.of_class.numpy(), groups.k
    views = {
        name: group_view(f.probs.numpy(), f.labels.numpy(), class_group, k)
        for name, f in (("tune", tune), ("test", test))
    }
    rows = []
    for rate in grid:
        rule = fit_rule(
            method,
            views["tune"],
            rate,
            mu_grid=cfg.mu_grid,
            power_iters=cfg.power_iters,
            worst_rounds=cfg.worst_rounds,
            worst_step=cfg.worst_step,
            seed=cfg.seed,
        )
        row = {"target_rate": rate, "tune_rejection_rate": evaluate_rule(rule, views["tune"])["rejection_rate"]}
        row |= evaluate_rule(rule, views["test"])
        row |= {"alpha": rule.alpha.tolist(), "b": rule.b.tolist(), "threshold": rule.t}
        rows.append(row)
    return rows


def curve_aurcs(rows: list[dict]) -> dict[str, float]:
    rates = [r["target_rate"] for r in rows]
    out = {}
    for metric in ("balanced_error", "worst_group_error", "error"):
        errs = [r[metric] for r in rows]
        for label, (lo, hi) in AURC_RANGES.items():
            keep = [i for i, x in enumerate(rates) if x <= hi + 1e-9]
            out[f"{metric}@{label}"] = aurc([rates[i] for i in keep], [errs[i] for i in keep], lo, hi)
    return out


def plot(curves: dict[tuple[str, str], list[dict]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    # One colour per source, one line style per method.
    colors = {s: f"C{i}" for i, s in enumerate(dict.fromkeys(s for s, _ in curves))}
    for (source, method), rows in curves.items():
        x = [r["rejection_rate"] for r in rows]
        style = {"chow": ":", "plugin_balanced": "--", "plugin_worst": "-"}.get(method, "-")
        for ax, metric in zip(axes, ("balanced_error", "worst_group_error"), strict=True):
            ax.plot(x, [r[metric] for r in rows], style, color=colors[source], marker=".", label=f"{source} / {method}")
    for ax, title in zip(axes, ("balanced error", "worst-group error"), strict=True):
        ax.set_xlabel("rejection rate (test)")
        ax.set_ylabel(title)
        ax.set_title(f"{title} vs rejection rate")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = pyio.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    io.atomic_write(path, lambda tmp: open(tmp, "wb").write(buf.getvalue()))


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--sources", default=None, help="comma list of experts and/or 'gating' (default: all exported)")
    parser.add_argument("--methods", default=None, help=f"comma list of {', '.join(METHODS)}")
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    ecfg = cfg.evaluate
    methods = cli.split_names(args.methods) or ecfg.methods
    for m in methods:
        if m not in METHODS:
            raise ArgseError(f"unknown method '{m}'; available methods: {', '.join(METHODS)}")
    sources = cli.split_names(args.sources) or ecfg.sources or available_sources(cfg.out_dir)
    if not sources:
        raise ArgseError(f"no exported logits under {cfg.out_dir / 'logits'}; run make experts first")
    files = load_sources(cfg.out_dir, sources, ["tune", "test"])
    grid = sorted(set(ecfg.rejection_grid) | set(AURC_TAIL))

    start = time.perf_counter()
    curves, aurcs = {}, {}
    for i, source in enumerate(sources):
        for method in methods:
            rows = sweep(files["tune"][i], files["test"][i], method, grid, ecfg, cfg.data.tail_max_count)
            curves[(source, method)] = rows
            aurcs[(source, method)] = curve_aurcs(rows)
    seconds = time.perf_counter() - start

    out = cfg.out_dir / "evaluation"
    report = {
        "config": asdict(ecfg),
        "tail_max_count": cfg.data.tail_max_count,
        "seconds": seconds,
        "aurc_definition": "mean error over the rejection-rate range: trapezoid rule over the target rejection "
        "rates, divided by the range width; held constant past the last rate (0.95)",
        "results": [{"source": s, "method": m, "aurc": aurcs[(s, m)], "curve": curves[(s, m)]} for s, m in curves],
    }
    io.write_json(out / "report.json", report)
    buf = pyio.StringIO()
    fields = [
        "source",
        "method",
        "target_rate",
        "tune_rejection_rate",
        "rejection_rate",
        "error",
        "balanced_error",
        "worst_group_error",
        "head_error",
        "tail_error",
        "head_coverage",
        "tail_coverage",
    ]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for (s, m), rows in curves.items():
        for r in rows:
            writer.writerow(
                {
                    "source": s,
                    "method": m,
                    **{f: r[f] for f in fields[2:8]},
                    "head_error": r["group_error"][0],
                    "tail_error": r["group_error"][1],
                    "head_coverage": r["group_coverage"][0],
                    "tail_coverage": r["group_coverage"][1],
                }
            )
    io.write_text(out / "rc_curves.csv", buf.getvalue())
    plot(curves, out / "rc_curves.png")

    md = [
        f"# Selective prediction: {cfg.name}\n",
        f"Rejectors fit on `tune`, evaluated on `test`; AURC = mean error "
        f"over the rejection-rate range (trapezoid rule). Fitting and evaluation took {seconds:.1f} s.\n",
        aurc_markdown(aurcs),
        "![risk-coverage curves](rc_curves.png)\n",
    ]
    io.write_text(out / "summary.md", "\n".join(md))
    table = Table(title=f"{cfg.name}: AURC on test (lower is better)")
    for c in ["source", "method", *AURC_COLUMNS]:
        table.add_column(c, justify="left" if c in ("source", "method") else "right")
    for (s, m), a in aurcs.items():
        table.add_row(s, m, *(f"{a[c]:.4f}" for c in AURC_COLUMNS))
    console = cli.console()
    console.print(table)
    console.print(f"report: {out / 'report.json'} ({seconds:.1f} s for {len(curves)} curves x {len(grid)} rates)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
