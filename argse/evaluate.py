"""Selective-prediction report for experts and the gated mixture.

``python -m argse.evaluate --config RUN.yaml --sources ce,gating --methods chow,plugin_balanced,plugin_worst``
fits each rejector on the rejector part of ``tune`` (the part the gate did not train on) for every
target rejection rate, evaluates it on ``test`` and writes report.json, rc_curves.csv,
rc_curves.png and summary.md under outputs/<run>/evaluation/. Every rate is taken under
``evaluate.test_prior`` (default: the training label distribution, as Narasimhan et al. 2024).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from argse import cli, reporting
from argse.config import EvaluateConfig, RunConfig
from argse.errors import ArgseError
from argse.gating import tune_parts
from argse.groups import Groups, head_tail_groups
from argse.logits import LogitsFile, available_sources, load_sources
from argse.metrics import lt_weights
from argse.reporting import AURC_METRICS, aurc_key
from argse.selective import (
    GATE_RULE,
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


def source_view(f: LogitsFile, positions: torch.Tensor, groups: Groups, ecfg: EvaluateConfig) -> GroupView:
    """The rows ``positions`` of one logits file as a GroupView of ``groups`` under the configured prior
    and protocol."""
    # The paper uses the softmax of the trained model as it is; argse its temperature-calibrated version.
    probs = torch.softmax(f.logits.double(), 1) if ecfg.protocol == "paper" else f.probs
    labels = f.labels[positions]
    weight = None
    if ecfg.test_prior == "train":
        weight = lt_weights(labels, torch.tensor(f.class_counts)).numpy()
    return group_view(probs[positions].numpy(), labels.numpy(), groups.class_group(), groups.k, weight)


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
    for metric in (*AURC_METRICS, "error"):
        errs = [r[metric] for r in rows]
        for span, (lo, hi) in AURC_RANGES.items():
            keep = [i for i, x in enumerate(rates) if x <= hi + 1e-9]
            out[aurc_key(metric, span)] = aurc([rates[i] for i in keep], [errs[i] for i in keep], lo, hi)
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
    files = load_sources(cfg.out_dir, sources, ["tune", "test"])
    tune0 = files["tune"][0]
    groups = head_tail_groups(torch.tensor(tune0.class_counts), cfg.data.tail_max_count)
    gate_part, fit_part = tune_parts(tune0.labels, cfg.gating.tune_fraction, cfg.seed)
    if "gating" in sources:
        check_gate_split(cfg, tune0.indices[fit_part].tolist())
    n_test = len(files["test"][0].labels)
    result = Evaluation(
        groups=groups.names,
        class_group=groups.of_class.tolist(),
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
        fit = source_view(tune, fit_part, groups, cfg.evaluate)
        held_out = source_view(test, torch.arange(n_test), groups, cfg.evaluate)
        for method, fit_one in rule_fitters(cfg, tune.expert, methods).items():
            rows = sweep(fit, held_out, fit_one, sweep_grid(cfg.evaluate))
            result.curves[(tune.expert, method)] = rows
            result.aurcs[(tune.expert, method)] = curve_aurcs(rows)
    result.seconds = time.perf_counter() - start
    return result


def sweep_grid(ecfg: EvaluateConfig) -> list[float]:
    """The configured target rejection rates and the extra ones that the [0, 1] AURC rests on."""
    return sorted(set(ecfg.rejection_grid) | set(AURC_TAIL))


def rule_fitters(cfg: RunConfig, source: str, methods: list[str]) -> dict[str, Callable[[GroupView, float], Rule]]:
    """How each method fits a rule to a view at a rate; the gating source adds its gate's own rule."""
    opts = fit_options(cfg.evaluate)
    fitters = {m: (lambda view, rate, m=m: fit_rule(m, view, rate, opts)) for m in methods}
    rules = gate_rules(cfg) if source == "gating" else None
    if rules:
        fitters[GATE_RULE] = lambda view, rate: fit_gate_rule(rules, view, rate)
    return fitters


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


def report_record(cfg: RunConfig, ev: Evaluation) -> dict:
    """The content of report.json: settings, samples, and every curve with its AURCs."""
    ecfg = cfg.evaluate
    return {
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


def write_reports(cfg: RunConfig, ev: Evaluation) -> dict[str, Path]:
    """report.json, rules.json, rc_curves.csv, rc_curves.png and summary.md; returns their paths."""
    return reporting.write_evaluation(cfg, ev, report_record(cfg, ev), rules_file(ev, cfg.evaluate))


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--sources", default=None, help="comma list of experts and/or 'gating' (default: all exported)")
    parser.add_argument("--methods", default=None, help=f"comma list of {', '.join(METHODS)}")
    args = parser.parse_args(argv)
    methods = cli.split_names(args.methods)
    cfg = cli.load_config(args, {"evaluate": {"methods": methods}} if methods else None)  # validates the methods
    cli.lock_run(cfg, "evaluate")
    sources = cli.split_names(args.sources) or cfg.evaluate.sources or available_sources(cfg.out_dir)
    if not sources:
        raise ArgseError(f"no exported logits under {cfg.out_dir / 'logits'}; run make experts first")
    ev = evaluate_sources(cfg, sources, cfg.evaluate.methods)
    paths = write_reports(cfg, ev)
    console = cli.console()
    console.print(reporting.aurc_table(
        f"{cfg.name}: AURC on test (lower is better; {reporting.describe(cfg.evaluate)})", ev.aurcs))  # fmt: skip
    console.print(
        f"{len(ev.curves)} curves in {ev.seconds:.1f} s; written: " + ", ".join(str(p) for p in paths.values())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
