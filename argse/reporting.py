"""Every table, CSV file, markdown page and plot argse shows or writes.

The entry points compute; this module presents: rich tables for the console, and the evaluation's
report.json, rules.json, rc_curves.csv, rc_curves.png and summary.md, and reproduce's results page.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from argse import filesets, published, storage
from argse.config import GATE_RULE
from argse.evaluation import AURC_METRICS, AURC_RANGES, Evaluation, aurc_key, empty_group_points
from argse.groups import FEW, HEAD, MANY, MEDIUM, TAIL
from argse.logits import set_folder
from argse.report import write_report
from argse.rules import write_rules

if TYPE_CHECKING:
    from argse.config import EvaluateConfig, RunConfig

# Accuracy columns of a classification report (argse.metrics), in the order the tables show them.
ACCURACY_COLUMNS = ["acc", "acc_lt", "balanced_acc", HEAD, TAIL, MANY, MEDIUM, FEW]
CALIBRATION_COLUMNS = ["ece_raw", "ece_cal"]
AURC_COLUMNS = [aurc_key(m, s) for s in AURC_RANGES for m in AURC_METRICS]


# ---------------------------------------------------------------- console tables


def new_table(title: str, labels: list[str], numbers: list[str]) -> Table:
    """A rich table with left-aligned label columns, then right-aligned number columns."""
    table = Table(title=title)
    for c in labels:
        table.add_column(c)
    for c in numbers:
        table.add_column(c, justify="right")
    return table


def accuracy_table(title: str, reports: dict[str, dict[str, float]]) -> Table:
    """One row per source: accuracy per group and calibration, in %."""
    columns = ACCURACY_COLUMNS + CALIBRATION_COLUMNS
    table = new_table(title, ["source"], columns)
    for name, rep in reports.items():
        table.add_row(name, *(f"{100 * rep[c]:.2f}" if c in rep else "-" for c in columns))
    return table


def mixture_table(title: str, reports: dict[str, dict[str, float]]) -> Table:
    """One row per expert or mixture: accuracy in % per group and NLL in nats."""
    columns = ["acc", "balanced_acc", HEAD, TAIL]
    table = new_table(title, ["source"], [*columns, "nll"])
    for name, rep in reports.items():
        table.add_row(name, *(f"{100 * rep[c]:.2f}" for c in columns), f"{rep['nll']:.3f}")
    return table


def routing_table(names: list[str], routing: dict[str, dict[str, dict[str, float]]]) -> Table:
    """The gate's weight of each expert within each group: mean [10th, 90th percentile]."""
    table = new_table("gate weight per group on test: mean [10th, 90th percentile]", ["group"], names)
    for group, per_expert in routing.items():
        table.add_row(group, *(f"{s['mean']:.3f} [{s['p10']:.3f}, {s['p90']:.3f}]" for s in per_expert.values()))
    return table


def aurc_table(title: str, aurcs: dict[tuple[str, str], dict[str, float]]) -> Table:
    """One row per (source, method): its AURCs."""
    table = new_table(title, ["source", "method"], AURC_COLUMNS)
    for (s, m), a in aurcs.items():
        table.add_row(s, m, *(f"{a[c]:.4f}" for c in AURC_COLUMNS))
    return table


# ---------------------------------------------------------------- the evaluation's files


def describe(ecfg: EvaluateConfig) -> str:
    """One line naming the prior and protocol, for every report."""
    prior = "training label distribution" if ecfg.test_prior == "train" else "class-balanced splits as they are"
    return f"test prior: {ecfg.test_prior} ({prior}); protocol: {ecfg.protocol}"


def aurc_markdown(aurcs: dict[tuple[str, str], dict[str, float]], curves: dict[tuple[str, str], list[dict]]) -> str:
    """AURC table, one row per (source, method), with how many of its points have a group accepting nothing."""
    lines = ["| source | method | empty-group points | " + " | ".join(AURC_COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(AURC_COLUMNS)]  # fmt: skip
    for (s, m), a in aurcs.items():
        cells = [str(empty_group_points(curves[(s, m)])), *(f"{a[c]:.4f}" for c in AURC_COLUMNS)]
        lines.append(f"| {s} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def empty_group_note(curves: dict[tuple[str, str], list[dict]]) -> str:
    """One console line when some curve has points where a group accepts nothing ('' when none has)."""
    counts = [n for n in (empty_group_points(rows) for rows in curves.values()) if n]
    if not counts:
        return ""
    return (f"{len(counts)} curve(s) have {sum(counts)} point(s) where a group accepts nothing: its error counts as "
            f"1 in the AURCs and the points are marked x in rc_curves.png (empty_group_points in report.json)")  # fmt: skip


def curves_csv(curves: dict[tuple[str, str], list[dict]], names: list[str], ecfg: EvaluateConfig) -> str:
    """One row per (source, method, target rate), with the error and coverage of every named group."""
    rates = ["target_rate", "tune_rejection_rate", "rejection_rate", "error", "balanced_error", "worst_group_error"]
    per_group = [f"{g}_{what}" for what in ("error", "coverage") for g in names]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["source", "method", "test_prior", "protocol", *rates, *per_group])
    writer.writeheader()
    for (s, m), rows in curves.items():
        for r in rows:
            groups = {f"{g}_error": r["group_error"][i] for i, g in enumerate(names)}
            groups |= {f"{g}_coverage": r["group_coverage"][i] for i, g in enumerate(names)}
            writer.writerow({"source": s, "method": m, "test_prior": ecfg.test_prior, "protocol": ecfg.protocol}
                            | {f: r[f] for f in rates} | groups)  # fmt: skip
    return buf.getvalue()


def plot_curves(curves: dict[tuple[str, str], list[dict]], path: Path, subtitle: str) -> None:
    """Balanced and worst-group error against the test rejection rate, one line per (source, method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    # One colour and marker per source (identical sources stay visible), one line style per method.
    sources = list(dict.fromkeys(s for s, _ in curves))
    looks = {s: (f"C{i}", "os^Dvx*P"[i % 8]) for i, s in enumerate(sources)}
    marked = False
    for (source, method), rows in curves.items():
        # Every point the AURC rests on is drawn; where a group accepts nothing its error is the convention 1, not a
        # measurement, so those points get a red x on top (one legend entry for all of them).
        x = [r["rejection_rate"] for r in rows]
        empty = [r for r in rows if min(r["group_coverage"]) <= 0]
        style = {"chow": ":", "plugin_balanced": "--", "plugin_worst": "-", GATE_RULE: "-."}.get(method, "-")
        color, marker = looks[source]
        for i, (ax, metric) in enumerate(zip(axes, AURC_METRICS, strict=True)):
            ax.plot(x, [r[metric] for r in rows], style, color=color, marker=marker, markersize=3,
                    markerfacecolor="none", label=f"{source} / {method}")  # fmt: skip
            if empty:
                label = "_nolegend_" if marked or i else "a group accepts nothing (its error counted as 1)"
                ax.plot([r["rejection_rate"] for r in empty], [r[metric] for r in empty], "x", color="red",
                        markersize=6, zorder=5, label=label)  # fmt: skip
        marked = marked or bool(empty)
    for ax, title in zip(axes, ("balanced error", "worst-group error"), strict=True):
        ax.set_xlabel("rejection rate (test)")
        ax.set_ylabel(title)
        ax.set_title(f"{title} vs rejection rate")
        ax.grid(alpha=0.3)
    note = "; x: a group accepts nothing, its error counted as 1 (as in the AURCs)" if marked else ""
    fig.suptitle(f"{subtitle}{note}", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("a group accepts nothing"))  # marker last
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    fig.legend(handles, labels, loc="center right", fontsize=7)  # outside the axes, covering no curve
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    storage.atomic_write(path, lambda tmp: open(tmp, "wb").write(buf.getvalue()))


def evaluation_markdown(cfg: RunConfig, ev: Evaluation) -> str:
    """summary.md: what was fitted on what, and the AURC table."""
    samples = ev.samples
    md = [
        f"# Selective prediction: {cfg.name}\n",
        f"{describe(cfg.evaluate).capitalize()}. Rejectors fit on the rejector part of `tune` "
        f"({samples['rejectors_fitted_on']['n']} samples; the other "
        f"{samples['gate_trained_on']['n']} trained the gate), evaluated on `test` "
        f"({samples['measured_on']['n']} samples); AURC = mean error over the rejection-rate range (trapezoid "
        f"rule). [0, 0.8] is the paper's range. Where a rule accepts no sample of a group, that group's error "
        f"is undefined (Narasimhan et al. 2024, Eq. 6 and Assumption 2) and counts as 1 in the AURCs; the "
        f"'empty-group points' column counts such points, drawn with a red x in the plot. Fitting and evaluation "
        f"took {ev.seconds:.1f} s.\n",
        aurc_markdown(ev.aurcs, ev.curves),
        "![risk-coverage curves](rc_curves.png)\n",
    ]
    return "\n".join(md)


def write_evaluation(cfg: RunConfig, ev: Evaluation) -> dict[str, Path]:
    """report.json, rules.json, rc_curves.csv, rc_curves.png and summary.md; returns their paths."""
    run = cfg.paths
    paths = {"report": write_report(cfg, ev), "rules": write_rules(run, ev, cfg.evaluate)}
    paths["curves"] = storage.write_text(run.curves_csv, curves_csv(ev.curves, ev.groups, cfg.evaluate))
    plot_curves(ev.curves, run.curves_png, f"{cfg.name}: {describe(cfg.evaluate)}")
    paths["plot"] = run.curves_png
    paths["summary"] = storage.write_text(run.summary, evaluation_markdown(cfg, ev))
    if storage.is_writer():  # the five files are one set, made from the logits of every source evaluated
        made_from = filesets.ids_of(cfg.out_dir, [set_folder(s) for s in dict.fromkeys(s for s, _ in ev.curves)])
        filesets.commit(run.evaluation, [p.name for p in paths.values()], made_from, "python -m argse.evaluate")
    return paths


# ---------------------------------------------------------------- reproduce's results page


def mean_se(values: list[float], scale: float = 1.0, digits: int = 4) -> str:
    """'mean ± standard error' (just the value for one seed)."""
    v = [scale * x for x in values]
    m = sum(v) / len(v)
    if len(v) == 1:
        return f"{m:.{digits}f}"
    se = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))
    return f"{m:.{digits}f} ± {se:.{digits}f}"


def seeds_accuracy_markdown(reports: list[dict[str, dict[str, float]]]) -> str:
    """Accuracy and calibration per source, mean ± standard error over the seeds' ``reports``."""
    columns = ACCURACY_COLUMNS + CALIBRATION_COLUMNS
    lines = ["| source | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in reports[0]:
        cells = [mean_se([r[name][c] for r in reports], 100, 2) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seeds_aurc_markdown(aurcs: list[dict[tuple[str, str], dict]], span: str = "0-0.8") -> str:
    """AURCs over ``span`` per (source, method) and (prior, protocol) view, mean ± standard error over seeds;
    ``aurcs`` holds per seed {(prior, protocol): {(source, method): AURCs}}."""
    views = list(aurcs[0])
    head = " | ".join(f"{m.replace('_error', '')} ({p}, {q})" for p, q in views for m in AURC_METRICS)
    lines = ["| source | method | " + head + " |", "|---|---|" + "---|" * (len(AURC_METRICS) * len(views))]
    for sm in aurcs[0][views[0]]:
        cells = [mean_se([a[v][sm][aurc_key(m, span)] for a in aurcs]) for v in views for m in AURC_METRICS]
        lines.append(f"| {sm[0]} | {sm[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results_page(docs: Path, name: str, command: tuple[str, str | None], cfgs: list[RunConfig],
                       tables: tuple[str, str], checks: list[str], minutes: float) -> Path:  # fmt: skip
    """docs/<name>.md and docs/<name>.png (the first seed's curves) from the tables and checks over seeds;
    ``command`` is the command line that made the page and its config file."""
    import torch  # only for the version line of the page

    cfg, d = cfgs[0], cfgs[0].data
    png = cfg.paths.curves_png.read_bytes()
    storage.atomic_write(docs / f"{name}.png", lambda tmp: Path(tmp).write_bytes(png))
    seeds = ", ".join(str(c.seed) for c in cfgs)
    lines = [
        f"# Results: `{name}`\n",
        f"Generated by `{command[0]}` on "
        f"{time.strftime('%Y-%m-%d')} ({torch.__version__}, {torch.get_num_threads()} CPU threads; {minutes:.0f} min). "
        f"Dataset `{d.dataset}`, imbalance factor {d.imbalance_factor:g}, tail = classes with at most "
        f"{d.tail_max_count} training images. Seeds: {seeds} ({len(cfgs)} run(s); values are mean ± standard "
        f"error over seeds). Recipes: `experts/*.yaml` overridden by `recipes` in `{command[1]}`.\n",
        "## Accuracy on `test` (%)\n",
        "ECE (15 bins) before (`ece_raw`) and after (`ece_cal`) temperature scaling on `val`. T minimises NLL on "
        "`val`, not ECE on `test`, so an already well-calibrated source can end slightly above its raw ECE. "
        "`acc_lt` re-weights the balanced test split to the training label distribution.\n",
        tables[0],
        "## Selective prediction: AURC over rejection rates [0, 0.8] on `test` (lower is better)\n",
        "Rejectors fit on the rejector part of `tune` (the gate trains on the other part). Columns: error "
        "(test prior, protocol); prior `train` weights every sample by pi_train(y)/pi_split(y) as Narasimhan et al. "
        "do, `balanced` takes the split as it is; protocol `paper` is the published procedure, `argse` adds "
        "calibration, best-round beta, refitting and the grid search (docs/selective.md).\n",
        tables[1],
        f"\n![risk-coverage curves, seed {cfg.seed}]({name}.png)\n",
        "## Checks (on seed means)\n",
        *checks,
        "",
        published.markdown(),
    ]
    return storage.write_text(docs / f"{name}.md", "\n".join(lines) + "\n")
