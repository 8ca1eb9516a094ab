"""Selective-prediction report for experts and the gated mixture.

``python -m argse.evaluate --config RUN.yaml --sources ce,gating --methods chow,plugin_balanced,plugin_worst``
fits each rejector on the rejector part of ``tune`` (the part the gate did not train on) for every
target rejection rate, evaluates it on ``test`` and writes report.json, rc_curves.csv,
rc_curves.png and summary.md under outputs/<run>/evaluation/. Every rate is taken under
``evaluate.test_prior`` (default: the training label distribution, as Narasimhan et al. 2024).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from rich.table import Table

from argse import cli, storage
from argse.config import EvaluateConfig, RunConfig
from argse.data import head_tail_groups
from argse.errors import ArgseError
from argse.gating import tune_parts
from argse.logits import LogitsFile, available_sources, load_sources
from argse.metrics import lt_weights
from argse.selective import (
    METHODS,
    FitOptions,
    GroupView,
    Rule,
    aurc,
    evaluate_rule,
    fit_rule,
    group_view,
    score,
    threshold,
)
from argse.selective_gate import nearest_rule

# Extra sweep points past the configured grid, so that AURC over [0, 1] rests on measured errors up to 0.95.
AURC_TAIL = (0.85, 0.9, 0.95)
AURC_RANGES = {"0-0.8": (0.0, 0.8), "0-1": (0.0, 1.0)}
AURC_COLUMNS = ["balanced_error@0-0.8", "worst_group_error@0-0.8", "balanced_error@0-1", "worst_group_error@0-1"]
# The rejector a selective gate learned with itself (gating.objective: selective_*), for the gating source only.
GATE_RULE = "gate_rule"
RULES_FORMAT = "argse.rules/1"
# Narasimhan et al. 2024, App. E.1 and F.3: with two groups the multipliers reduce to one difference, lambda,
# tuned over {1, 6, 11}. Its sign is not legible in the text we could read; argse sets mu_head = 0 and
# mu_tail = lambda, the orientation that accepts tail predictions more readily, measured in docs/selective.md.
PAPER_MU_GRID = (1.0, 6.0, 11.0)
# App. F.3: Algorithm 1 with M = 10 power iterations; Algorithm 2 with T = 25 rounds and xi = 1.
PAPER_POWER_ITERS, PAPER_ROUNDS, PAPER_STEP = 10, 25, 1.0


def fit_options(ecfg: EvaluateConfig) -> FitOptions:
    """The rejector-fitting settings of the configured protocol."""
    if ecfg.protocol == "paper":
        return FitOptions(
            PAPER_MU_GRID, PAPER_POWER_ITERS, PAPER_ROUNDS, PAPER_STEP, ecfg.seed, every_iterate=False,
            best_round=False, refit_all=False, search="power",
        )  # fmt: skip
    return FitOptions(
        tuple(ecfg.mu_grid), ecfg.power_iters, ecfg.worst_rounds, ecfg.worst_step, ecfg.seed, search=ecfg.search
    )


def source_view(f: LogitsFile, positions: torch.Tensor, class_group: np.ndarray, k: int, ecfg: EvaluateConfig):
    """The rows ``positions`` of one logits file as a GroupView under the configured prior and protocol."""
    # The paper uses the softmax of the trained model as it is; argse its temperature-calibrated version.
    probs = torch.softmax(f.logits.double(), 1) if ecfg.protocol == "paper" else f.probs
    labels = f.labels[positions]
    weight = None
    if ecfg.test_prior == "train":
        weight = lt_weights(labels, torch.tensor(f.class_counts)).numpy()
    return group_view(probs[positions].numpy(), labels.numpy(), class_group, k, weight)


def fit_gate_rule(rules: list[dict], view: GroupView, rate: float) -> Rule:
    """The selective gate's learned (alpha, b) nearest to ``rate``; only t is refitted, on ``view``, to the
    target rate, exactly as every other method's t is, so the curves are comparable."""
    learned = nearest_rule(rules, rate)
    alpha, b = np.asarray(learned["alpha"], float), np.asarray(learned["b"], float)
    s, _ = score(view, alpha, b)
    return Rule(alpha, b, float(threshold(s, rate, view.weight)))


def gate_rules(cfg: RunConfig) -> list[dict] | None:
    """The rules a selective gate learned (gate.json), or None for an NLL gate or no gate."""
    path = cfg.out_dir / "gating" / "gate.json"
    return json.loads(path.read_text()).get("rules") if path.is_file() else None


def sweep(
    fit: GroupView, test: GroupView, fit_one: Callable[[GroupView, float], Rule], grid: list[float]
) -> list[dict]:
    """Fit a rule on ``fit`` at every target rate with ``fit_one(view, rate)`` and measure it on ``test``."""
    rows = []
    for rate in grid:
        rule = fit_one(fit, rate)
        row = {"target_rate": rate, "tune_rejection_rate": evaluate_rule(rule, fit)["rejection_rate"]}
        row |= evaluate_rule(rule, test)
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


@dataclass
class Evaluation:
    """Curves and AURCs per (source, method), and which samples fitted and measured them."""

    curves: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    aurcs: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    samples: dict[str, dict] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    class_group: list[int] = field(default_factory=list)
    seconds: float = 0.0


def check_gate_split(cfg: RunConfig, rejector_indices: list[int]) -> None:
    """The rejector part must be what the gate left untouched: refuse a split that differs from gate.json's."""
    path = cfg.out_dir / "gating" / "gate.json"
    left = json.loads(path.read_text()).get("samples", {}).get("left_for_rejectors") if path.is_file() else None
    if left is not None and sorted(left["indices"]) != sorted(rejector_indices):
        raise ArgseError(
            f"the gate in {path} was trained on another part of tune than the one left for the rejectors now "
            f"(gating.tune_fraction or seed differ from when it was trained); rerun train_gating with these settings"
        )


def evaluate_sources(cfg: RunConfig, sources: list[str], methods: list[str]) -> Evaluation:
    """Fit every method on every source's rejector part of ``tune`` and measure it on ``test``."""
    ecfg = cfg.evaluate
    files = load_sources(cfg.out_dir, sources, ["tune", "test"])
    tune0 = files["tune"][0]
    groups = head_tail_groups(torch.tensor(tune0.class_counts), cfg.data.tail_max_count)
    class_group, k = groups.of_class.numpy(), groups.k
    gate_part, fit_part = tune_parts(tune0.labels, cfg.gating.tune_fraction, cfg.seed)
    if "gating" in sources:
        check_gate_split(cfg, tune0.indices[fit_part].tolist())
    n_test = len(files["test"][0].labels)
    grid = sorted(set(ecfg.rejection_grid) | set(AURC_TAIL))
    opts = fit_options(ecfg)
    result = Evaluation(
        groups=groups.names,
        class_group=class_group.tolist(),
        samples={
            "rejectors_fitted_on": {
                "split": "tune",
                "part": "rejector",
                "n": len(fit_part),
                "indices": tune0.indices[fit_part].tolist(),
            },
            "gate_trained_on": {"split": "tune", "part": "gate", "n": len(gate_part)},
            "measured_on": {"split": "test", "n": n_test},
        },
    )
    start = time.perf_counter()
    for tune, test in zip(files["tune"], files["test"], strict=True):
        fit = source_view(tune, fit_part, class_group, k, ecfg)
        held_out = source_view(test, torch.arange(n_test), class_group, k, ecfg)
        fitters = {m: (lambda view, rate, m=m: fit_rule(m, view, rate, opts)) for m in methods}
        rules = gate_rules(cfg) if tune.expert == "gating" else None
        if rules:
            fitters[GATE_RULE] = lambda view, rate, rules=rules: fit_gate_rule(rules, view, rate)
        for method, fit_one in fitters.items():
            rows = sweep(fit, held_out, fit_one, grid)
            result.curves[(tune.expert, method)] = rows
            result.aurcs[(tune.expert, method)] = curve_aurcs(rows)
    result.seconds = time.perf_counter() - start
    return result


def describe(ecfg: EvaluateConfig) -> str:
    """One line naming the prior and protocol, for every report."""
    prior = "training label distribution" if ecfg.test_prior == "train" else "class-balanced splits as they are"
    return f"test prior: {ecfg.test_prior} ({prior}); protocol: {ecfg.protocol}"


def aurc_markdown(aurcs: dict[tuple[str, str], dict[str, float]]) -> str:
    """AURC table, one row per (source, method)."""
    lines = ["| source | method | " + " | ".join(AURC_COLUMNS) + " |", "|---|---|" + "---|" * len(AURC_COLUMNS)]
    lines += [f"| {s} | {m} | " + " | ".join(f"{a[c]:.4f}" for c in AURC_COLUMNS) + " |" for (s, m), a in aurcs.items()]
    return "\n".join(lines) + "\n"


def curves_csv(curves: dict[tuple[str, str], list[dict]], names: list[str], ecfg: EvaluateConfig) -> str:
    """One row per (source, method, target rate), with the error and coverage of every group."""
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


def plot(curves: dict[tuple[str, str], list[dict]], path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    # One colour and marker per source (identical sources stay visible), one line style per method.
    sources = list(dict.fromkeys(s for s, _ in curves))
    looks = {s: (f"C{i}", "os^Dvx*P"[i % 8]) for i, s in enumerate(sources)}
    for (source, method), rows in curves.items():
        # A point where some group accepts nothing is not drawn: its error is a convention (1), not a measurement.
        rows = [r for r in rows if min(r["group_coverage"]) > 0]
        x = [r["rejection_rate"] for r in rows]
        style = {"chow": ":", "plugin_balanced": "--", "plugin_worst": "-", GATE_RULE: "-."}.get(method, "-")
        color, marker = looks[source]
        for ax, metric in zip(axes, ("balanced_error", "worst_group_error"), strict=True):
            ax.plot(x, [r[metric] for r in rows], style, color=color, marker=marker, markersize=3,
                    markerfacecolor="none", label=f"{source} / {method}")  # fmt: skip
    for ax, title in zip(axes, ("balanced error", "worst-group error"), strict=True):
        ax.set_xlabel("rejection rate (test)")
        ax.set_ylabel(title)
        ax.set_title(f"{title} vs rejection rate")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{subtitle}; points where a group accepts nothing are not drawn", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7)  # outside the axes, covering no curve
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    storage.atomic_write(path, lambda tmp: open(tmp, "wb").write(buf.getvalue()))


def rules_file(ev: Evaluation, ecfg: EvaluateConfig) -> dict:
    """Every fitted rule, for ``argse.predict``: per source, method and target rate, alpha and b per group
    and the threshold t. With probabilities p_y(x) of the source and groups [y] = class_group[y]:
    predict argmax_y alpha_[y] p_y(x); accept iff max_y alpha_[y] p_y(x) - sum_y b_[y] p_y(x) >= t."""
    return {
        "format": RULES_FORMAT,
        "test_prior": ecfg.test_prior,
        "protocol": ecfg.protocol,
        # protocol paper scores the softmax of the raw logits; argse the temperature-calibrated one
        "probabilities": "softmax" if ecfg.protocol == "paper" else "calibrated",
        "groups": ev.groups,
        "class_group": ev.class_group,
        "rules": {
            s: {m: [{"rate": r["target_rate"], "alpha": r["alpha"], "b": r["b"], "t": r["threshold"]}
                    for r in ev.curves[(s, m)]] for (s2, m) in ev.curves if s2 == s}
            for s in dict.fromkeys(s for s, _ in ev.curves)
        },
    }  # fmt: skip


def write_reports(cfg: RunConfig, ev: Evaluation) -> dict[str, object]:
    """report.json, rc_curves.csv, rc_curves.png and summary.md; returns their paths."""
    ecfg, out = cfg.evaluate, cfg.out_dir / "evaluation"
    report = {
        "config": asdict(ecfg),
        "test_prior": ecfg.test_prior,
        "protocol": ecfg.protocol,
        "fit_options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(fit_options(ecfg)).items()},
        "samples": ev.samples,
        "tail_max_count": cfg.data.tail_max_count,
        "seconds": ev.seconds,
        "aurc_definition": "mean error over the rejection-rate range: trapezoid rule over the target rejection "
        "rates, divided by the range width; held constant past the last rate (0.95)",
        "results": [
            {"source": s, "method": m, "aurc": ev.aurcs[(s, m)], "curve": ev.curves[(s, m)]} for s, m in ev.curves
        ],
    }
    paths = {"report": storage.write_json(out / "report.json", report)}
    paths["rules"] = storage.write_json(out / "rules.json", rules_file(ev, ecfg))
    paths["curves"] = storage.write_text(out / "rc_curves.csv", curves_csv(ev.curves, ev.groups, ecfg))
    plot(ev.curves, out / "rc_curves.png", f"{cfg.name}: {describe(ecfg)}")
    paths["plot"] = out / "rc_curves.png"
    fitted = ev.samples["rejectors_fitted_on"]["n"]
    md = [
        f"# Selective prediction: {cfg.name}\n",
        f"{describe(ecfg).capitalize()}. Rejectors fit on the rejector part of `tune` ({fitted} samples; the other "
        f"{ev.samples['gate_trained_on']['n']} trained the gate), evaluated on `test` "
        f"({ev.samples['measured_on']['n']} samples); AURC = mean error over the rejection-rate range (trapezoid "
        f"rule). [0, 0.8] is the paper's range; past it a rule may reject a whole group, whose error then counts "
        f"as 1 in the [0, 1] AURC (such points are left out of the plot). Fitting and evaluation took "
        f"{ev.seconds:.1f} s.\n",
        aurc_markdown(ev.aurcs),
        "![risk-coverage curves](rc_curves.png)\n",
    ]
    paths["summary"] = storage.write_text(out / "summary.md", "\n".join(md))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--sources", default=None, help="comma list of experts and/or 'gating' (default: all exported)")
    parser.add_argument("--methods", default=None, help=f"comma list of {', '.join(METHODS)}")
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    cli.lock_run(cfg, "evaluate")
    methods = cli.split_names(args.methods) or cfg.evaluate.methods
    for m in methods:
        if m == GATE_RULE:
            raise ArgseError(f"'{GATE_RULE}' is added by itself for the gating source when its gate learned rules "
                             f"(gating.objective: selective_*); choose among {', '.join(METHODS)}")  # fmt: skip
        if m not in METHODS:
            raise ArgseError(f"unknown method '{m}'; available methods: {', '.join(METHODS)}")
    sources = cli.split_names(args.sources) or cfg.evaluate.sources or available_sources(cfg.out_dir)
    if not sources:
        raise ArgseError(f"no exported logits under {cfg.out_dir / 'logits'}; run make experts first")
    ev = evaluate_sources(cfg, sources, methods)
    paths = write_reports(cfg, ev)

    table = Table(title=f"{cfg.name}: AURC on test (lower is better; {describe(cfg.evaluate)})")
    for c in ["source", "method", *AURC_COLUMNS]:
        table.add_column(c, justify="left" if c in ("source", "method") else "right")
    for (s, m), a in ev.aurcs.items():
        table.add_row(s, m, *(f"{a[c]:.4f}" for c in AURC_COLUMNS))
    console = cli.console()
    console.print(table)
    console.print(
        f"{len(ev.curves)} curves in {ev.seconds:.1f} s; written: " + ", ".join(str(p) for p in paths.values())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
