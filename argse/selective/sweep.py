"""Selective evaluation: every rejector fitted on every source's rejector part of ``tune`` at every
target rejection rate, measured on ``test``, and the AURCs of the resulting curves.

Every rate is taken under ``evaluate.test_prior`` (default: the training label distribution, as
Narasimhan et al. 2024). ``python -m argse.evaluate`` runs this (argse.stages.evaluation) and writes the
files (argse.reports.report_file, rules_file, pages).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np
import torch

from argse.config.sections import GATE_RULE, EvaluateConfig, RunConfig
from argse.core.errors import ArgseError
from argse.data.groups import Groups, head_tail_groups
from argse.data.logits import LogitsFile, SourceReader
from argse.data.metrics import lt_weights
from argse.data.splits import tune_parts
from argse.selective.allocator import keep_freed_memory
from argse.selective.curve_metrics import CurveSummary, Targets, interval, summarise
from argse.selective.guarantee import Guarantee, Rung, achieved, ladder
from argse.selective.rejectors import REJECTORS, FitOptions, Rule, aurc, evaluate_rule, fit_rule
from argse.selective.views import GroupView, group_summaries, score, threshold

# The selective metrics whose AURCs are reported, and the rejection-rate spans they are taken over.
AURC_METRICS = ("balanced_error", "worst_group_error")
AURC_RANGES = {"0-0.8": (0.0, 0.8), "0-1": (0.0, 1.0)}


def aurc_key(metric: str, span: str, reached: bool = False) -> str:
    """The name of the AURC of ``metric`` over the rejection-rate span ``span`` (e.g. "0-0.8"): over the target
    rates (the headline), or with ``reached`` over the rates each rule reached on test."""
    return f"{metric}@{span}" + ("@reached" if reached else "")


# Extra sweep points past the configured grid, so that AURC over [0, 1] rests on measured errors up to 0.95.
AURC_TAIL = (0.85, 0.9, 0.95)
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
            best_round=False, refit_all=False, search="power", fixed_cost=True,
        )  # fmt: skip
    return FitOptions(
        tuple(ecfg.mu_grid), ecfg.power_iters, ecfg.worst_rounds, ecfg.worst_step, ecfg.seed, search=ecfg.search,
        coarse=ecfg.search_grid, starts=ecfg.search_starts,
    )  # fmt: skip


# Rows per block when a source's probabilities are summarised by group: a block's float64 softmax is the only
# [rows, C] array made, so memory does not grow with N x C (iNaturalist 2018: 8,142 classes). Small enough that a
# block's arrays stay in cache and are reused by the allocator rather than mapped afresh (about 3x faster at
# 8,142 classes than 2,048 rows, docs/performance_notes.md).
VIEW_ROWS = 256


def source_view(f: LogitsFile, positions: torch.Tensor, groups: Groups, ecfg: EvaluateConfig) -> GroupView:
    """The rows ``positions`` of one logits file as a GroupView of ``groups`` under the configured prior
    and protocol."""
    labels = f.labels[positions]
    weight = None
    if ecfg.test_prior == "train":
        weight = lt_weights(labels, torch.tensor(f.class_counts)).numpy()
    class_group = groups.class_group()
    parts = []
    for start in range(0, len(positions), VIEW_ROWS):
        rows = positions[start : start + VIEW_ROWS]
        logits = f.logits[rows]
        # The paper uses the softmax of the trained model as it is; argse its temperature-calibrated version.
        # The softmax is taken in float64 (converted inside softmax, with the same result as a copy first).
        logits = logits if ecfg.protocol == "paper" else logits / f.temperature
        probs = torch.softmax(logits, 1, dtype=torch.float64).numpy()
        parts.append(group_summaries(probs, labels[start : start + VIEW_ROWS].numpy(), class_group, groups.k))
    if not parts:
        parts = [group_summaries(np.zeros((0, f.num_classes)), np.zeros(0, np.int64), class_group, groups.k)]
    top, mass, hit = (np.concatenate(x) for x in zip(*parts, strict=True))
    weight = np.ones(len(labels)) if weight is None else np.asarray(weight, float)
    return GroupView(top, mass, hit, class_group[labels.numpy()], groups.k, weight)


def nearest_rule(rules: list[dict], rate: float) -> dict:
    """The learned rule whose training rate is closest to ``rate`` (ties: the lower rate)."""
    return min(rules, key=lambda r: (abs(r["rate"] - rate), r["rate"]))


def fit_gate_rule(rules: list[dict], view: GroupView, rate: float) -> Rule:
    """The selective gate's learned (alpha, b) nearest to ``rate``; only t is refitted, on ``view``, to the
    target rate, exactly as every other method's t is, so the curves are comparable."""
    learned = nearest_rule(rules, rate)
    alpha, b = np.asarray(learned["alpha"], float), np.asarray(learned["b"], float)
    if len(alpha) != view.k:
        raise ArgseError(f"the gate's learned rules have {len(alpha)} groups, the run {view.k}; rerun train_gating")
    s, _ = score(view, alpha, b)
    return Rule(alpha, b, float(threshold(s, rate, view.weight)))


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


def empty_group_points(rows: list[dict]) -> int:
    """How many points of a curve have a group that accepts nothing (its error counted as EMPTY_GROUP_ERROR);
    judged by coverage, which every report's rows hold."""
    return sum(min(r["group_coverage"]) <= 0 for r in rows)


def curve_aurcs(rows: list[dict]) -> dict[str, float]:
    """AURCs over every point of the curve, those with an empty group included at EMPTY_GROUP_ERROR, exactly
    the points pages.plot_curves draws (marking those). The headline integrates over the target rates;
    the ``@reached`` ones over the rejection rates the rules reached on test, as Narasimhan et al. plot
    their curves (Sec. 6: errors "as a function of the proportion of rejections")."""
    out = {}
    for reached in (False, True):
        rates = [r["rejection_rate" if reached else "target_rate"] for r in rows]
        for metric in (*AURC_METRICS, "error"):
            errs = [r[metric] for r in rows]
            for span, (lo, hi) in AURC_RANGES.items():
                keep = [i for i, x in enumerate(rates) if x <= hi + 1e-9]
                if keep:
                    out[aurc_key(metric, span, reached)] = aurc(
                        [rates[i] for i in keep], [errs[i] for i in keep], lo, hi
                    )
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
    # curve_metrics' figures per (source, method): {reduction: {figure: value}}, their bootstrap intervals
    # {reduction: {figure: [lo, hi]}} and draws {reduction: {figure: [B]}} (both empty without resamples)
    figures: dict[tuple[str, str], dict[str, dict[str, float]]] = field(default_factory=dict)
    intervals: dict[tuple[str, str], dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    draws: dict[tuple[str, str], dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    # each registered rejector's ladder of candidate rules (argse.selective.guarantee) and the configured
    # guarantees it meets, with what they reach on test
    ladders: dict[tuple[str, str], list[Rung]] = field(default_factory=dict)
    guaranteed: dict[tuple[str, str], list[dict]] = field(default_factory=dict)


def evaluate_sources(cfg: RunConfig, reader: SourceReader, methods: list[str], gate=None) -> Evaluation:
    """Fit every method on every source of ``reader`` on its rejector part of ``tune`` and measure it on
    ``test``; ``gate`` (the gate of source 'gating', as read from its files) adds its learned rules.

    Sources are read one at a time, reduced to their per-group summaries, and swept side by side, one
    process per core (:func:`source_pool`); only the summaries travel, not the logits."""
    sources = reader.sources
    tune0 = reader.read(sources[0], "tune")
    groups = head_tail_groups(torch.tensor(tune0.class_counts), cfg.data.tail_max_count)
    check_groups(groups, tune0.class_counts, cfg.data.tail_max_count)
    check_guarantees(cfg.evaluate, groups)
    gate_part, fit_part = tune_parts(tune0.labels, cfg.gating.tune_fraction, cfg.seed)
    if cfg.evaluate.fit_sample == "tune":
        check_fit_sample(cfg.evaluate, sources)
        gate_part, fit_part = gate_part[:0], torch.arange(len(tune0.labels))
    if gate is not None:
        check_rejector_part(gate, tune0.indices[fit_part].tolist())
    n_test = len(reader.manifest["splits"]["test"])
    fit_indices = tune0.indices[fit_part].tolist()
    del tune0
    result = Evaluation(
        groups=groups.names,
        class_group=groups.of_class.tolist(),
        samples={
            "rejectors_fitted_on": {
                "split": "tune",
                "part": "rejector" if len(gate_part) else "all",
                "n": len(fit_part),
                "indices": fit_indices,
            },  # fmt: skip
            "gate_trained_on": {"split": "tune", "part": "gate", "n": len(gate_part)},
            "measured_on": {"split": "test", "n": n_test},
        },
    )

    opts, grid = fit_options(cfg.evaluate), sweep_grid(cfg.evaluate)
    for m in methods:
        REJECTORS.get(m)  # an unknown name is one sentence listing the registered rejectors, before any work
    start = time.perf_counter()
    with source_pool(len(sources)) as pool:
        pending = []
        for source in sources:  # one source's logits in memory at a time; its sweep runs while the next is read
            fit = source_view(reader.read(source, "tune"), fit_part, groups, cfg.evaluate)
            test = reader.read(source, "test")
            held_out = source_view(test, torch.arange(n_test), groups, cfg.evaluate)
            extras = Extras.of(cfg.evaluate, test.labels.numpy())  # every source has the same labels
            del test
            check_samples(groups, {"the rejector part of tune": fit, "test": held_out})
            rules = gate.rules if gate is not None and source == "gating" else None
            try:
                pending.append(pool.submit(sweep_source, fit, held_out, methods, opts, grid, rules, extras))
            except BrokenProcessPool:
                break  # an earlier source's sweep process died: its result, read below, names it
        for source, job in zip(sources, pending, strict=False):
            for method, (rows, summary, rungs, met) in swept(source, job).items():
                key = (source, method)
                if rungs:
                    result.ladders[key], result.guaranteed[key] = rungs, met
                result.curves[key], result.aurcs[key] = rows, curve_aurcs(rows)
                result.figures[key], result.draws[key] = summary.figures, summary.draws
                level = cfg.evaluate.confidence
                result.intervals[key] = {
                    r: {f: list(interval(d, level)) for f, d in figs.items()} for r, figs in summary.draws.items()
                }
        if len(pending) < len(sources):
            raise stopped(sources[len(pending)])
    result.seconds = time.perf_counter() - start
    return result


def check_rejector_part(gate, rejector_indices: list[int]) -> None:
    """The rejector part of tune must be what the gate left untouched: refuse one that differs."""
    if sorted(gate.rejector_indices) != sorted(rejector_indices):
        raise ArgseError(
            f"the gate in {gate.path} was trained on another part of tune than the one left for the rejectors now "
            f"(gating.tune_fraction or seed differ from when it was trained); rerun train_gating with these settings"
        )


def swept(source: str, job: Future) -> dict[str, list[dict]]:
    """A source's curves from its sweep process, or one sentence if the process died (the system kills the
    largest process when memory runs out)."""
    try:
        return job.result()
    except BrokenProcessPool:
        raise stopped(source) from None


def stopped(source: str) -> ArgseError:
    return ArgseError(
        f"the process sweeping the rejectors of '{source}' stopped without a result (killed, most likely for "
        f"lack of memory); free memory or evaluate fewer sources at once (evaluate.sources)"
    )


def source_pool(sources: int) -> Executor:
    """Where the sources' sweeps run: processes forked for them (one per core, at least one), where processes can be
    forked; else threads. The search is many short numpy calls, so threads would wait on each other for the
    interpreter; and each sweep process tunes its own allocator to keep the memory the search frees
    (argse.allocator), which ends with it, so the calling process is left as it was."""
    workers = max(1, min(sources, cpu_count()))
    if "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"), initializer=keep_freed_memory
        )
    return ThreadPoolExecutor(workers)


@dataclass(frozen=True)
class Extras:
    """What a source's sweep computes besides the curves: their figures and bootstrap (the test labels are the
    strata; how many resamples, their seed, the interval's level, the operating points) and, with ``ladders``,
    each rejector's candidate rules and the guarantees they meet."""

    labels: np.ndarray
    resamples: int
    seed: int
    level: float
    targets: Targets
    guarantees: tuple[Guarantee, ...] = ()
    ladders: bool = True

    @classmethod
    def of(cls, ecfg: EvaluateConfig, labels: np.ndarray) -> Extras:
        targets = Targets(ecfg.target_coverage, ecfg.target_risk)
        guarantees = tuple(Guarantee(tuple(g.risk), g.delta, g.risk_of) for g in ecfg.guarantees)
        return cls(labels, ecfg.bootstrap, ecfg.seed, ecfg.confidence, targets, guarantees, ecfg.ladders)


def sweep_source(
    fit: GroupView,
    held_out: GroupView,
    methods: list[str],
    opts: FitOptions,
    grid: list[float],
    gate_rules,
    extras: Extras,
) -> dict[str, tuple[list[dict], CurveSummary, list[Rung], list[dict]]]:
    """Every method's curve on one source (with ``gate_rules``, the selective gate's own rule too) and its
    figures, each point with the interval of its balanced and worst-group error; and every registered
    rejector's ladder of candidate rules with the configured guarantees it meets on test."""
    fitters = {m: (lambda view, rate, m=m: fit_rule(m, view, rate, opts)) for m in methods}
    if gate_rules:
        fitters[GATE_RULE] = lambda view, rate: fit_gate_rule(gate_rules, view, rate)
    curves = {method: sweep(fit, held_out, fit_one, grid) for method, fit_one in fitters.items()}
    summaries = summarise(
        {m: decisions(rows, held_out) for m, rows in curves.items()}, held_out.group, held_out.k, held_out.weight,
        extras.labels, grid, extras.targets, extras.resamples, extras.seed, extras.level,
    )  # fmt: skip
    for m, rows in curves.items():
        for reduction, band in summaries[m].bands.items():
            for row, (lo, hi) in zip(rows, band, strict=True):
                row[f"{reduction}_interval"] = [float(lo), float(hi)]
    ladders = {m: ladder(m, fit, grid, opts) for m in methods} if extras.ladders else {}
    met = {m: [achieved(rungs, g, held_out) for g in extras.guarantees] for m, rungs in ladders.items()}
    return {m: (rows, summaries[m], ladders.get(m, []), met.get(m, [])) for m, rows in curves.items()}


def decisions(rows: list[dict], view: GroupView) -> tuple[np.ndarray, np.ndarray]:
    """[R, N] acceptance and correctness on ``view`` of the rules a curve's rows record."""
    applied = [Rule(np.asarray(r["alpha"]), np.asarray(r["b"]), r["threshold"]).apply(view) for r in rows]
    return np.stack([a for a, _ in applied]), np.stack([c for _, c in applied])


def cpu_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_fit_sample(ecfg: EvaluateConfig, sources: list[str]) -> None:
    """All of tune fits the rejectors only when no gate, trained on part of it, is evaluated."""
    if ecfg.fit_sample == "tune" and "gating" in sources:  # the gate's source name (argse.stages.run.GATE)
        raise ArgseError(
            "evaluate.fit_sample=tune fits the rejectors on all of tune, part of which trained the gate; evaluate "
            "the experts alone (--sources without gating), or keep fit_sample: rejector_part"
        )


def check_guarantees(ecfg: EvaluateConfig, groups: Groups) -> None:
    """A guarantee of each group's error needs one risk per group of this run."""
    for i, g in enumerate(ecfg.guarantees):
        if g.risk_of == "groups" and len(g.risk) != groups.k:
            raise ArgseError(
                f"evaluate.guarantees[{i}] gives {len(g.risk)} risk(s) for the run's {groups.k} groups "
                f"({', '.join(groups.names)}); give one per group, in that order"
            )


def check_groups(groups: Groups, class_counts: list[int], tail_max_count: int) -> None:
    """Refuse a group without classes: its error would be EMPTY_GROUP_ERROR at every rate, averaged into the
    balanced error as if measured (the config check may have let it through; this is the evaluation's own)."""
    for name in groups.names:
        if groups.size(name) == 0:
            counts = ", ".join(str(c) for c in class_counts)
            raise ArgseError(
                f"data.tail_max_count={tail_max_count} leaves the {name} group without classes (training class "
                f"counts: {counts}; tail = classes with at most that many images), so its error would count as 1 "
                f"at every rate; {_split_hint(class_counts)}"
            )


def _split_hint(class_counts: list[int]) -> str:
    lo, hi = min(class_counts), max(class_counts)
    if lo == hi:
        return f"every class has {lo} training images, so no data.tail_max_count makes both a head and a tail"
    return f"set data.tail_max_count to at least {lo} and below {hi}"


def check_samples(groups: Groups, views: dict[str, GroupView]) -> None:
    """Refuse a group with classes but no sample in a split the evaluation fits or measures on."""
    for split, view in views.items():
        have = np.bincount(view.group, minlength=groups.k)
        for k, name in enumerate(groups.names):
            if have[k] == 0:
                raise ArgseError(
                    f"the {name} group has no sample in {split}, so its error there would be a convention, not a "
                    f"measurement; remake the splits with more held-out images per class or change "
                    f"data.tail_max_count"
                )


def sweep_grid(ecfg: EvaluateConfig) -> list[float]:
    """The configured target rejection rates and the extra ones that the [0, 1] AURC rests on."""
    return sorted(set(ecfg.rejection_grid) | set(AURC_TAIL))
