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

from argse.core import provenance, storage
from argse.core.errors import ArgseError
from argse.data.groups import FEW, HEAD, MANY, MEDIUM, TAIL
from argse.reports import plots, published, uncertainty
from argse.reports.report_file import read_report, write_report
from argse.reports.rules_file import write_rules
from argse.selective.curve_metrics import Targets
from argse.selective.sweep import AURC_METRICS, AURC_RANGES, Evaluation, aurc_key, empty_group_points

if TYPE_CHECKING:
    from argse.config.sections import EvaluateConfig, RunConfig

# Accuracy columns of a classification report (argse.metrics), in the order the tables show them.
ACCURACY_COLUMNS = ["acc", "acc_lt", "balanced_acc", HEAD, TAIL, MANY, MEDIUM, FEW]
CALIBRATION_COLUMNS = ["ece_raw", "ece_cal"]
AURC_COLUMNS = [aurc_key(m, s) for s in AURC_RANGES for m in AURC_METRICS]
PAPER_RANGE = "0-0.8"  # the AURC range of Narasimhan et al. (2024), marked in the plots


# ---------------------------------------------------------------- console tables


def new_table(title: str, labels: list[str], numbers: list[str]) -> Table:
    """A rich table with left-aligned label columns, then right-aligned number columns."""
    table = Table(title=title)
    for c in labels:
        table.add_column(c)
    for c in numbers:
        table.add_column(c, justify="right")
    return table


def percent(rep: dict[str, float], c: str) -> str:
    """An accuracy in %, with its bootstrap interval where the report has one (argse.data.metrics)."""
    if c not in rep:
        return "-"
    lo, hi = rep.get(f"{c}_low"), rep.get(f"{c}_high")
    if lo is None or hi is None or math.isnan(lo):
        return f"{100 * rep[c]:.2f}"
    return f"{100 * rep[c]:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"


INTERVAL_NOTE = "accuracies with their 95% interval over 1,000 class-stratified bootstrap resamples of test"


def accuracy_table(title: str, reports: dict[str, dict[str, float]]) -> Table:
    """One row per source: accuracy per group (with its interval) and calibration, in %."""
    table = new_table(f"{title}; {INTERVAL_NOTE}", ["source"], ACCURACY_COLUMNS + CALIBRATION_COLUMNS)
    for name, rep in reports.items():
        cells = [percent(rep, c) for c in ACCURACY_COLUMNS]
        table.add_row(name, *cells, *(f"{100 * rep[c]:.2f}" if c in rep else "-" for c in CALIBRATION_COLUMNS))
    return table


def mixture_table(title: str, reports: dict[str, dict[str, float]]) -> Table:
    """One row per expert or mixture: accuracy in % per group (with its interval) and NLL in nats."""
    columns = ["acc", "balanced_acc", HEAD, TAIL]
    table = new_table(f"{title}; {INTERVAL_NOTE}", ["source"], [*columns, "nll"])
    for name, rep in reports.items():
        table.add_row(name, *(percent(rep, c) for c in columns), f"{rep['nll']:.3f}")
    return table


def routing_table(names: list[str], routing: dict[str, dict[str, dict[str, float]]]) -> Table:
    """The gate's weight of each expert within each group: mean [10th, 90th percentile]."""
    table = new_table("gate weight per group on test: mean [10th, 90th percentile]", ["group"], names)
    for group, per_expert in routing.items():
        table.add_row(group, *(f"{s['mean']:.3f} [{s['p10']:.3f}, {s['p90']:.3f}]" for s in per_expert.values()))
    return table


def aurc_cell(a: dict[str, float], column: str, intervals: dict | None) -> str:
    """An AURC with its bootstrap interval where the evaluation has one ([lo, hi] of the figure behind the column)."""
    metric, span = column.split("@", 1)
    bounds = (intervals or {}).get(metric, {}).get("aurc" if span == "0-0.8" else f"aurc@{span}")
    return f"{a[column]:.4f}" if not bounds else f"{a[column]:.4f} [{bounds[0]:.4f}, {bounds[1]:.4f}]"


def aurc_table(title: str, aurcs: dict[tuple[str, str], dict[str, float]], intervals: dict | None = None) -> Table:
    """One row per (source, method): its AURCs, each with its 95% interval when ``intervals`` (per (source,
    method), as report.json holds them) has it."""
    table = new_table(title, ["source", "method"], AURC_COLUMNS)
    for (s, m), a in aurcs.items():
        table.add_row(s, m, *(aurc_cell(a, c, (intervals or {}).get((s, m))) for c in AURC_COLUMNS))
    return table


# ---------------------------------------------------------------- the evaluation's files


def describe(ecfg: EvaluateConfig) -> str:
    """One line naming the prior and protocol, for every report."""
    prior = "training label distribution" if ecfg.test_prior == "train" else "class-balanced splits as they are"
    return f"test prior: {ecfg.test_prior} ({prior}); protocol: {ecfg.protocol}"


def aurc_markdown(aurcs: dict[tuple[str, str], dict[str, float]], curves: dict[tuple[str, str], list[dict]],
                  intervals: dict | None = None) -> str:  # fmt: skip
    """AURC table, one row per (source, method), with how many of its points have a group accepting nothing, each
    AURC with its interval where ``intervals`` has it."""
    lines = ["| source | method | empty-group points | " + " | ".join(AURC_COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(AURC_COLUMNS)]  # fmt: skip
    for (s, m), a in aurcs.items():
        bounds = (intervals or {}).get((s, m))
        cells = [str(empty_group_points(curves[(s, m)])), *(aurc_cell(a, c, bounds) for c in AURC_COLUMNS)]
        lines.append(f"| {s} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def empty_group_note(curves: dict[tuple[str, str], list[dict]]) -> str:
    """One console line when some curve has points where a group accepts nothing ('' when none has)."""
    counts = [n for n in (empty_group_points(rows) for rows in curves.values()) if n]
    if not counts:
        return ""
    return (f"{len(counts)} curve(s) have {sum(counts)} point(s) where a group accepts nothing: its error counts as "
            f"1 in the AURCs and the points are marked x in rc_curves.png (empty_group_points in report.json)")  # fmt: skip


CURVE_RATES = ["target_rate", "tune_rejection_rate", "rejection_rate", "error", "balanced_error", "worst_group_error"]


def share(x: float) -> float:
    """A rate, error or coverage as the CSV gives it: in [0, 1] and rounded to 9 decimals. Sums of sample weights
    leave float noise of about 1e-15 (a rejection rate of -1.1e-15, a coverage of 1.0000000000000036); 9 decimals
    keep every step a split of up to 10^8 samples can make."""
    return round(min(max(float(x), 0.0), 1.0), 9)


def curves_csv(curves: dict[tuple[str, str], list[dict]], names: list[str], ecfg: EvaluateConfig) -> str:
    """One row per (source, method, target rate), with the error and coverage of every named group."""
    rates = CURVE_RATES
    per_group = [f"{g}_{what}" for what in ("error", "coverage") for g in names]
    per_group += [f"{m}_{end}" for m in AURC_METRICS for end in ("low", "high")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["source", "method", "test_prior", "protocol", *rates, *per_group])
    writer.writeheader()
    for (s, m), rows in curves.items():
        for r in rows:
            groups = {f"{g}_error": share(r["group_error"][i]) for i, g in enumerate(names)}
            groups |= {f"{g}_coverage": share(r["group_coverage"][i]) for i, g in enumerate(names)}
            for metric in AURC_METRICS:  # the point's bootstrap interval, empty without resamples
                lo, hi = r.get(f"{metric}_interval", ("", ""))
                groups |= {
                    f"{metric}_low": "" if lo == "" else share(lo),
                    f"{metric}_high": "" if hi == "" else share(hi),
                }
            writer.writerow({"source": s, "method": m, "test_prior": ecfg.test_prior, "protocol": ecfg.protocol}
                            | {f: share(r[f]) for f in rates} | groups)  # fmt: skip
    return buf.getvalue()


def read_curves_csv(path: Path) -> dict[tuple[str, str], list[dict]]:
    """rc_curves.csv back as {(source, method): rows} with the rates and each row's group coverages, every
    number checked (the seeds page averages them)."""
    text = storage.read_text(path, "the risk-coverage curves")
    reader = csv.DictReader(io.StringIO(text))
    head = reader.fieldnames or []
    groups = [f.removesuffix("_coverage") for f in head if f.endswith("_coverage")]
    missing = [f for f in ["source", "method", *CURVE_RATES] if f not in head]
    if missing or not groups:
        raise ArgseError(
            f"{path} has no column '{(missing or ['<group>_coverage'])[0]}'; rerun python -m argse.evaluate"
        )
    curves: dict[tuple[str, str], list[dict]] = {}
    for line, row in enumerate(reader, start=2):
        try:
            rec = {f: float(row[f]) for f in CURVE_RATES} | {
                "group_coverage": [float(row[f"{g}_coverage"]) for g in groups]
            }
        except (TypeError, ValueError):
            raise ArgseError(
                f"{path}, line {line}: a rate or coverage is not a number; rerun python -m argse.evaluate"
            ) from None
        curves.setdefault((row["source"], row["method"]), []).append(rec)
    return curves


def seed_curves(paths: list[Path]) -> dict[tuple[str, str], plots.Curve]:
    """The seeds' rc_curves.csv averaged point by point; the seeds must hold the same curves at the same rates."""
    per_seed = [read_curves_csv(p) for p in paths]
    for p, seed in zip(paths[1:], per_seed[1:], strict=True):
        shape = {k: [r["target_rate"] for r in v] for k, v in seed.items()}
        if shape != {k: [r["target_rate"] for r in v] for k, v in per_seed[0].items()}:
            raise ArgseError(
                f"{p} holds other sources, methods or rates than {paths[0]}; rerun python -m argse.reproduce"
            )
    return plots.mean_curves(per_seed)


def rc_curves(curves: dict[tuple[str, str], list[dict]]) -> dict[tuple[str, str], plots.Curve]:
    """An evaluation's curves as plots draws them: every point the AURC rests on, the empty-group ones marked,
    with each point's bootstrap interval where the evaluation resampled."""
    out = {}
    for key, rows in curves.items():
        bands = None
        if rows and all(f"{m}_interval" in rows[0] for m in AURC_METRICS):
            bands = {m: [r[f"{m}_interval"] for r in rows] for m in AURC_METRICS}
        out[key] = plots.Curve([r["rejection_rate"] for r in rows], {m: [r[m] for r in rows] for m in AURC_METRICS},
                               empty=[min(r["group_coverage"]) <= 0 for r in rows], bands=bands)  # fmt: skip
    return out


def plot_curves(curves: dict[tuple[str, str], list[dict]], path: Path, subtitle: str) -> Path:
    """rc_curves.png: balanced and worst-group error against the test rejection rate, one panel per source."""
    return plots.rc_panels(rc_curves(curves), path, subtitle, AURC_RANGES[PAPER_RANGE][1])


def fitted_on(samples: dict) -> str:
    """What the rejectors were fitted on, in words."""
    n, gate = samples["rejectors_fitted_on"]["n"], samples["gate_trained_on"]["n"]
    if samples["rejectors_fitted_on"]["part"] == "all":
        return f"all of `tune` ({n} samples; evaluate.fit_sample: tune, no gate evaluated)"
    return f"the rejector part of `tune` ({n} samples; the other {gate} trained the gate)"


def evaluation_markdown(cfg: RunConfig, ev: Evaluation) -> str:
    """summary.md: what was fitted on what, and the AURC table."""
    samples = ev.samples
    md = [
        f"# Selective prediction: {cfg.name}\n",
        f"{describe(cfg.evaluate).capitalize()}. Rejectors fit on {fitted_on(samples)}, evaluated on `test` "
        f"({samples['measured_on']['n']} samples); AURC = mean error over the rejection-rate range (trapezoid "
        f"rule). [0, 0.8] is the paper's range. Where a rule accepts no sample of a group, that group's error "
        f"is undefined (Narasimhan et al. 2024, Eq. 6 and Assumption 2) and counts as 1 in the AURCs; the "
        f"'empty-group points' column counts such points, drawn with a red x in the plot. Fitting and evaluation "
        f"took {ev.seconds:.1f} s.\n",
        aurc_markdown(ev.aurcs, ev.curves, ev.intervals),
        "## More figures of each curve\n",
        FIGURES_NOTE,
        uncertainty.figures_markdown(
            ev,
            Targets(cfg.evaluate.target_coverage, cfg.evaluate.target_risk),
            cfg.evaluate.confidence,
            cfg.evaluate.bootstrap,
        ),
        uncertainty.paired_markdown(ev, cfg.evaluate.confidence),
        uncertainty.guarantees_markdown(ev),
        "![risk-coverage curves](rc_curves.png)\n",
    ]
    return "\n".join(md)


FIGURES_NOTE = (
    "Over rejection rates [0, 0.8], under the same prior and groups as the AURC (definitions: docs/selective.md, "
    '"Figures"): `augrc` the area under the generalized risk P(accepted and wrong), `e_aurc` the AURC less that of '
    "the same predictions with each group's errors rejected first, `risk@coverage=c` the error at rejection rate "
    "1 - c, `coverage@risk=r` the largest test coverage of a point whose error is at most r (0: none), "
    "`risk@coverage=1` the error when nothing is rejected.\n"
)


EVALUATION_FILES = {"curves": "rc_curves.csv", "plot": "rc_curves.png", "summary": "summary.md",
                    "figures": uncertainty.FIGURES_FILE}  # fmt: skip


def write_evaluation(folder: Path, cfg: RunConfig, ev: Evaluation) -> dict[str, Path]:
    """report.json, rules.json, rc_curves.csv, rc_curves.png and summary.md into ``folder``; returns their paths."""
    paths = {"report": write_report(folder, cfg, ev), "rules": write_rules(folder, ev, cfg.evaluate)}
    paths["curves"] = storage.write_text(
        folder / EVALUATION_FILES["curves"], curves_csv(ev.curves, ev.groups, cfg.evaluate)
    )
    plot_curves(ev.curves, folder / EVALUATION_FILES["plot"], f"{cfg.name}: {describe(cfg.evaluate)}")
    paths["plot"] = folder / EVALUATION_FILES["plot"]
    paths["summary"] = storage.write_text(folder / EVALUATION_FILES["summary"], evaluation_markdown(cfg, ev))
    paths["figures"] = storage.write_text(folder / EVALUATION_FILES["figures"], uncertainty.figures_csv(ev))
    if draws := uncertainty.write_draws(folder, ev, cfg.evaluate.bootstrap, cfg.evaluate.seed):
        paths["draws"] = draws
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
        if len(reports) == 1:  # one seed: the accuracy's bootstrap interval instead of a spread over seeds
            cells[: len(ACCURACY_COLUMNS)] = [percent(reports[0][name], c) for c in ACCURACY_COLUMNS]
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


def kept_checkpoints(cfg: RunConfig, sources: dict[str, Path]) -> str:
    """Which epoch each trained expert of the run kept (its recipe's ``checkpoint``, from its exported test logits);
    files from before argse recorded the setting kept the best epoch on val, as argse then always did."""
    from argse.data.logits import read_logits  # the page's only look inside the files

    parts, old = [], False
    for expert in cfg.experts:
        if expert not in sources:
            continue
        path = sources[expert] / "test.safetensors"
        recipe = read_logits(path).config
        stages = {k: v for k, v in recipe.items() if isinstance(v, dict) and "epochs" in v}  # decoupling's stages
        if "epochs" in recipe:
            stages = {"": recipe}
        if not stages:
            parts.append(f"{expert}: derived (no training)")
            continue
        kept = []
        for stage, r in stages.items():
            old = old or "checkpoint" not in r
            kept.append(
                f"{stage + ' ' if stage else ''}`{r.get('checkpoint', 'best_val')}`{'' if 'checkpoint' in r else '*'}"
            )
        parts.append(f"{expert}: {', '.join(kept)}")
    note = " (* trained before the recipe recorded it: the best epoch on val)" if old else ""
    return f"Checkpoints kept (recipe `checkpoint`: `best_val` or `last`){note}: {'; '.join(parts)}.\n"


def published_markdown(cfg: RunConfig, classes: list[str], reports: list[dict[str, dict[str, float]]],
                       sources: dict[str, Path]) -> str:  # fmt: skip
    """The page's published-figures section: every expert beside the figures of its method where the run (of
    class names ``classes``) is one of the published datasets (argse.reports.published.dataset_of), else the
    figures alone."""
    from argse.data.logits import read_logits  # decoupling's variant, from its export

    m = cfg.model
    dataset = published.dataset_of(cfg.data.dataset, classes, cfg.data.imbalance_factor, m.arch, m.depth)
    if not dataset:
        return published.markdown()
    exports = {n: read_logits(sources[n] / "test.safetensors") for n in reports[0] if n in sources}
    argse = {}
    for name, f in exports.items():
        values = [100 * r[name]["balanced_acc"] for r in reports]
        cell = percent(reports[0][name], "balanced_acc") if len(reports) == 1 else mean_se(values, digits=2)
        key = f"decoupling:{f.config.get('classifier', 'crt')}" if name == "decoupling" else name
        argse[key] = (sum(values) / len(values), cell)
    spread = ("its 95% bootstrap interval over test" if len(reports) == 1 else
              "mean ± standard error over seeds")  # fmt: skip
    return (
        f"## Against the published figures ({dataset})\n\n"
        f"Balanced test accuracy (%), argse's with {spread}; each published figure as read, its source and recipe "
        f"numbered below. A published figure is one run or a mean over the source's own trials, on the official "
        f"CIFAR files; argse's run reads the JPEG archive where its data says so. What the gaps are made of, "
        f"measured where argse could: docs/training.md, 'Against the published figures'.\n\n"
        + published.comparison_markdown(dataset, argse)
        + "\nSelective prediction: Narasimhan et al. (2024) report CIFAR-100-LT only; what should carry over is the "
        "ordering under the training prior, both plug-ins well below Chow:\n\n" + published.AURC
    )


def write_results_page(docs: Path, name: str, command: tuple[str, str | None], cfgs: list[RunConfig],
                       tables: tuple[str, str], checks: list[str], minutes: float, evaluations: list[Path],
                       sources: dict[str, Path], published_section: str) -> Path:  # fmt: skip
    """docs/<name>.md and docs/<name>.png (the seeds' mean curves, with a ± standard error band) from the tables
    and checks over seeds; ``command`` is the command line that made the page and its config file."""
    import torch  # only for the version line of the page

    cfg, d = cfgs[0], cfgs[0].data
    seeds = ", ".join(str(c.seed) for c in cfgs)
    curves = seed_curves([e / EVALUATION_FILES["curves"] for e in evaluations])
    plots.rc_panels(curves, docs / f"{name}.png", f"{name}: {describe(cfg.evaluate)}; mean over seeds {seeds}",
                    AURC_RANGES[PAPER_RANGE][1])  # fmt: skip
    lines = [
        f"# Results: `{name}`\n",
        f"Generated by `{command[0]}` at {provenance.commit()} on "
        f"{time.strftime('%Y-%m-%d')} ({torch.__version__}, {torch.get_num_threads()} CPU threads; {minutes:.0f} min). "
        f"Dataset `{d.dataset}`, imbalance factor {d.imbalance_factor:g}, tail = classes with at most "
        f"{d.tail_max_count} training images. Seeds: {seeds} ({len(cfgs)} run(s); values are mean ± standard "
        f"error over seeds). Recipes: `experts/*.yaml` overridden by `recipes` in `{command[1]}`.\n",
        kept_checkpoints(cfg, sources),
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
        f"\n![risk-coverage curves, mean ± standard error over seeds {seeds}]({name}.png)\n",
        f"## More figures of each curve ({describe(cfg.evaluate)})\n",
        uncertainty.seeds_figures_markdown([read_report(e) for e in evaluations], cfg.evaluate.confidence),
        "## Checks (on seed means)\n",
        *checks,
        "",
        published_section,
    ]
    return storage.write_text(docs / f"{name}.md", "\n".join(lines) + "\n")
