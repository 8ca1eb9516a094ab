"""The plug-ins against a brute-force search of their own rule family (two groups), raw and calibrated.

    python -m studies.plugin_family --config configs/cifar10_lt.yaml --set output_dir=DIR \
        [--sources ce,logit_adjust] [--out docs/results/plugin_family_cifar10_lt.md]

For every source, both test priors (train, balanced) and every target rate of ``evaluate.rejection_grid``,
fits on the rejector part of ``tune`` (``argse.data.splits.tune_parts``, as ``argse.evaluate``):

- argse's ``plugin_balanced`` / ``plugin_worst`` with ``search: grid`` and ``search: power`` (Algorithm 1/2
  alone), on calibrated probabilities (``protocol: argse``) and on the raw softmax;
- a brute-force search of the family, on the same probabilities: with alpha_head = 1 and b_head = 1, a rule is
  alpha = (1, a), b = (1, 1 + d) (every rule of the family is one of these up to scale and a shift of b, which t
  absorbs); a = exp(log_a) on a fine grid and d = max(1, a) tan(theta), theta on a fine grid of (-pi/2, pi/2)
  (so d, hence mu_tail = a - 1 - d, covers the whole real line; Chow is log_a = theta = 0), then a finer grid
  around the best few; t is the rate's weighted quantile of the score on the fitting sample, exactly as
  ``views.threshold``; each rate's rule is the one with the lowest objective of the method on the fitting
  sample (balanced error, worst-group error);
- prototypes of a better ``refine`` for ``plugin_worst`` (a global coarse grid and several starts before the
  zoom), timed against today's.

Prints, and writes to ``--out``, AURC over [0, 0.8] on ``test`` and each method's objective on the fitting
sample (its AURC there: the trapezoid mean over the same rates), the relative gap of argse's search to the brute
force, and which probabilities each plug-in should use, decided on the fitting sample only.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from argse import cli
from argse.config.loading import load_run_config
from argse.config.schema import changed
from argse.core import provenance
from argse.data.groups import head_tail_groups
from argse.data.logits import folder_sources, load_sources, run_folders, run_manifest
from argse.data.splits import tune_parts
from argse.selective import rejectors
from argse.selective.rejectors import FitOptions, Rule, evaluate_rule, fit_rule
from argse.selective.sweep import aurc_key, curve_aurcs, fit_options, source_view
from argse.selective.views import EMPTY_GROUP_ERROR, GroupView, group_rates, score, threshold

METRIC = {"plugin_balanced": "balanced_error", "plugin_worst": "worst_group_error"}  # each method's objective
SPAN = "0-0.8"
PRIORS = ("train", "balanced")
PROBS = ("calibrated", "raw")

# The brute force's grid: log a in [-8, 8] by 0.04 (raw softmax needs |log a| > 4), theta on 121 points of (-pi/2, pi/2) (0 included); then
# POLISH rounds, each a 9 x 9 grid spanning +-span grid steps around the `top` best candidates of every rate and
# objective (each round's candidates are scored at every rate).
LOG_A = np.round(np.linspace(-8.0, 8.0, 401), 10)
THETA = np.linspace(-np.pi / 2, np.pi / 2, 123)[1:-1]
POLISH = ((6, 1.0), (3, 0.25), (2, 0.0625))  # (top, span in grid steps)
POLISH_POINTS = 9
BATCH = 1024


# ----------------------------------------------------------------------------------------------- the family


def family_rule(log_a: float, d: float) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, b) of the family point (log a, d): alpha = (1, a), b = (1, 1 + d); mu_tail = a - 1 - d."""
    a = float(np.exp(log_a))
    return np.array([1.0, a]), np.array([1.0, 1.0 + d])


def grid_points(log_a: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (log a, d) of the 2-D grid, d = max(1, a) tan(theta), flattened, log_a major."""
    la, th = (x.ravel() for x in np.meshgrid(log_a, theta, indexing="ij"))
    return la, np.maximum(1.0, np.exp(la)) * np.tan(th)


def family_objectives(view: GroupView, log_a: np.ndarray, d: np.ndarray, rates) -> tuple[np.ndarray, np.ndarray]:
    """Balanced and worst-group error on ``view`` [C, R] of the candidates (log_a, d) [C] at every rate.

    Exactly ``score`` -> ``threshold`` -> ``group_rates`` for each candidate and rate (tested), but one sort per
    candidate serves every rate: in score order, the accepted samples are a suffix starting at the first sample
    tied with the threshold, and group counts over a suffix are reversed cumulative sums.
    """
    if view.k != 2:
        raise ValueError("the brute force covers two groups (head, tail)")
    rates = np.asarray(rates, float)
    n, w, grp = len(view.group), view.weight, view.group
    equal = bool(np.all(w == w[0]))
    bal, worst = np.empty((len(log_a), len(rates))), np.empty((len(log_a), len(rates)))
    for lo in range(0, len(log_a), BATCH):
        a, dd = np.exp(log_a[lo : lo + BATCH])[:, None], d[lo : lo + BATCH, None]
        weighted = a * view.top[:, 1]
        better = weighted > view.top[:, 0]  # ties keep the head, as score() does
        s = np.where(better, weighted, view.top[:, 0]) - view.mass[:, 0] - (1.0 + dd) * view.mass[:, 1]
        correct = np.where(better, view.hit[:, 1], view.hit[:, 0])
        order = np.argsort(s, axis=1)
        ss = np.take_along_axis(s, order, 1)
        rows = np.arange(len(ss))[:, None]
        if equal:
            kth = np.broadcast_to(np.minimum(np.floor(rates * n).astype(int), n - 1), (len(ss), len(rates)))
        else:  # views.threshold: kth = #{sorted positions whose preceding weight <= rate * total} - 1
            ws = w[order]
            before = np.cumsum(ws, 1) - ws
            q = rates * w.sum() * (1 + 1e-12)
            idx = np.searchsorted(q, before.ravel(), "left").reshape(before.shape)  # first rate with q >= before
            flat = (rows * (len(rates) + 1) + idx).ravel()
            hist = np.bincount(flat, minlength=len(ss) * (len(rates) + 1)).reshape(len(ss), len(rates) + 1)
            kth = np.clip(np.cumsum(hist, 1)[:, : len(rates)] - 1, 0, n - 1)
        first = np.ascontiguousarray(kth)
        tied = np.diff(ss, axis=1) == 0
        if tied.any():  # accept every sample scored >= t: ties with t start before kth
            pos = np.broadcast_to(np.arange(n), ss.shape)
            new_value = np.concatenate([np.ones((len(ss), 1), bool), ~tied], 1)
            first = np.take_along_axis(np.maximum.accumulate(np.where(new_value, pos, 0), axis=1), first, 1)
        errs = []
        g_sorted, w_sorted = grp[order], w[order]
        wrong_sorted = ~np.take_along_axis(correct, order, 1)
        first_rev = n - 1 - first  # suffix sums from first = reversed cumulative sums at n - 1 - first
        for g in range(2):
            in_g = np.where(g_sorted == g, w_sorted, 0.0)[:, ::-1]
            acc = np.take_along_axis(np.cumsum(in_g, 1), first_rev, 1)
            err = np.take_along_axis(np.cumsum(in_g * wrong_sorted[:, ::-1], 1), first_rev, 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                errs.append(np.where(acc > 0, err / acc, EMPTY_GROUP_ERROR))
        bal[lo : lo + BATCH] = (errs[0] + errs[1]) / 2
        worst[lo : lo + BATCH] = np.maximum(errs[0], errs[1])
    return bal, worst


def official_objective(view: GroupView, alpha: np.ndarray, b: np.ndarray, rate: float, metric: str) -> float:
    """A rule's objective on ``view`` at ``rate``, with t set as rejectors.fit_rule sets it."""
    s, correct = score(view, alpha[None], b[None])
    t = threshold(s, rate, view.weight)
    err, _, _ = group_rates(s >= t[:, None], correct, view.group, view.k, view.weight)
    return float(err[0].max() if metric == "worst_group_error" else err[0].mean())


@dataclasses.dataclass
class Brute:
    """The brute force's rule per rate and metric, and its objective on the fitting sample."""

    rules: dict[str, list[Rule]]
    objective: dict[str, list[float]]


def distinct_best(objective: np.ndarray, log_a: np.ndarray, top: int) -> np.ndarray:
    """The ``top`` best candidates with distinct log a (at rate 0 only a matters: the best would be one a)."""
    order = np.argsort(objective, kind="stable")
    _, first = np.unique(log_a[order], return_index=True)
    return order[np.sort(first)[:top]]


def brute_force(view: GroupView, rates, log_a: np.ndarray = LOG_A, theta: np.ndarray = THETA) -> Brute:
    """The best rule of the family per rate, for each metric, on ``view``: the grid, then the POLISH rounds.
    Chow's rule is candidate 0, so an exact tie goes to it, then to the earlier grid point."""
    la, d = grid_points(log_a, theta)
    la, d = np.concatenate([[0.0], la]), np.concatenate([[0.0], d])
    objs = dict(zip(METRIC.values(), family_objectives(view, la, d, rates), strict=True))
    step_la, step_th = log_a[1] - log_a[0], theta[1] - theta[0]
    off = np.linspace(-1.0, 1.0, POLISH_POINTS)
    for top, span in POLISH:
        th = np.arctan(d / np.maximum(1.0, np.exp(la)))
        seeds = np.unique(
            np.concatenate([distinct_best(o[:, r], la, top) for o in objs.values() for r in range(len(rates))])
        )
        p_la = la[seeds, None, None] + span * step_la * off[None, :, None]
        p_th = th[seeds, None, None] + span * step_th * off[None, None, :]
        p_la, p_th = (x.ravel() for x in np.broadcast_arrays(p_la, p_th))
        p_d = np.maximum(1.0, np.exp(p_la)) * np.tan(np.clip(p_th, -np.pi / 2 + 1e-6, np.pi / 2 - 1e-6))
        more = family_objectives(view, p_la, p_d, rates)
        objs = {m: np.concatenate([objs[m], o]) for m, o in zip(METRIC.values(), more, strict=True)}
        la, d = np.concatenate([la, p_la]), np.concatenate([d, p_d])
    out = Brute({}, {})
    for metric, o in objs.items():
        best = np.argmin(o, axis=0)  # the first minimum
        out.rules[metric], out.objective[metric] = [], []
        for r, rate in enumerate(rates):
            alpha, b = family_rule(la[best[r]], d[best[r]])
            s, _ = score(view, alpha, b)
            out.rules[metric].append(Rule(alpha, b, float(threshold(s, rate, view.weight))))
            out.objective[metric].append(float(o[best[r], r]))
    return out


# -------------------------------------------------------------------------- prototypes of a better refine


def objectives(view: GroupView, alpha: np.ndarray, b: np.ndarray, rate: float, metric: str) -> np.ndarray:
    """Objective of rules stacked in alpha, b [G, K] at ``rate``: rejectors.objectives for the metric."""
    return rejectors.objectives(view, alpha, b, rate, beta_of(view, metric))[0]


def beta_of(view: GroupView, metric: str) -> np.ndarray | None:
    """The group weights selective's search uses for ``metric``: 1/K (balanced), None (the worst group)."""
    return None if metric == "worst_group_error" else np.full(view.k, 1.0 / view.k)


def zoom(view, alpha, b, best, rate, metric, points, zooms):
    """Today's local search (rejectors.zoom) from the incumbent (alpha, b) with objective ``best``."""
    return rejectors.zoom(view, (best, alpha, b), rate, beta_of(view, metric), points, zooms)


@dataclasses.dataclass(frozen=True)
class Search:
    """A variant of rejectors.refine: ``coarse`` = (n_log_alpha, n_theta) of a global grid scored first
    (0: none), ``starts`` = how many of the best distinct candidates (start rule, Chow, coarse grid) are
    zoomed, and the zoom's ``points`` and ``zooms``."""

    name: str
    coarse: tuple[int, int] = (0, 0)
    starts: int = 1
    points: int = 15
    zooms: int = 3
    span_log_alpha: float = 4.0


SEARCHES = (
    Search("today"),
    Search("2 starts", starts=2),
    Search("coarse 21x21 in [-4, 4], 3 starts", coarse=(21, 21), starts=3),
    Search("coarse 33x33 in [-8, 8], 3 starts", coarse=(33, 33), starts=3, span_log_alpha=8.0),
)


def refine(view: GroupView, rule: Rule, rate: float, metric: str, search: Search) -> Rule:
    """rejectors.refine with the changes of ``search``; Search() is today's refine exactly."""
    alpha, b = rule.alpha / rule.alpha[0], rule.b / rule.alpha[0]
    one = np.ones(view.k)
    cand_a, cand_b = [alpha, one], [b, one]  # the start rule first: ties keep it, as today
    if search.coarse[0]:
        for k in range(1, view.k):  # a global grid of each group's pair (log alpha_k, theta_k), others at the start
            la = np.linspace(-search.span_log_alpha, search.span_log_alpha, search.coarse[0])
            th = np.linspace(-np.pi / 2, np.pi / 2, search.coarse[1] + 2)[1:-1]
            la, th = (x.ravel() for x in np.meshgrid(la, th, indexing="ij"))
            alphas, bs = np.tile(alpha, (len(la), 1)), np.tile(b, (len(la), 1))
            alphas[:, k] = np.exp(la)
            bs[:, k] = b[0] + np.maximum(1.0, alphas[:, k]) * np.tan(th)
            cand_a.extend(alphas)
            cand_b.extend(bs)
    cand_a, cand_b = np.array(cand_a), np.array(cand_b)
    obj = objectives(view, cand_a, cand_b, rate, metric)
    order = np.argsort(obj, kind="stable")
    picked: list[int] = []
    for i in order:  # the best distinct candidates (Chow may equal the start)
        if len(picked) == search.starts:
            break
        if not any(np.allclose(cand_a[i], cand_a[j]) and np.allclose(cand_b[i], cand_b[j]) for j in picked):
            picked.append(int(i))
    best = (float(obj[order[0]]), cand_a[order[0]], cand_b[order[0]])
    for i in picked:
        found = zoom(view, cand_a[i].copy(), cand_b[i].copy(), float(obj[i]), rate, metric, search.points, search.zooms)
        if found[0] < best[0]:
            best = found
    s, _ = score(view, best[1], best[2])
    return Rule(best[1], best[2], float(threshold(s, rate, view.weight)))


def prototype_fitter(method: str, opts: FitOptions, search: Search) -> Callable[[GroupView, float], Rule]:
    """Algorithm 1/2 (argse's, search: power) followed by the refine variant ``search``."""
    power = dataclasses.replace(opts, search="power")
    return lambda view, rate: refine(view, fit_rule(method, view, rate, power), rate, METRIC[method], search)


# -------------------------------------------------------------------------------------------------- the runs


@dataclasses.dataclass
class Curve:
    test_aurc: dict[str, float]  # AURC over [0, 0.8] on test, per metric
    fit_aurc: dict[str, float]  # the same on the fitting sample
    fit_points: dict[str, list[float]]  # the objective on the fitting sample at each rate


def curve(fit: GroupView, test: GroupView, rules: list[Rule], rates: list[float]) -> Curve:
    test_rows, fit_rows = [], []
    for rate, rule in zip(rates, rules, strict=True):
        test_rows.append({"target_rate": rate, **evaluate_rule(rule, test)})
        fit_rows.append({"target_rate": rate, **evaluate_rule(rule, fit)})
    keys = {m: aurc_key(m, SPAN) for m in METRIC.values()}
    t, f = curve_aurcs(test_rows), curve_aurcs(fit_rows)
    points = {m: [row[m] for row in fit_rows] for m in keys}
    return Curve({m: t[k] for m, k in keys.items()}, {m: f[k] for m, k in keys.items()}, points)


def fitted(fitter: Callable[[GroupView, float], Rule], view: GroupView, rates) -> tuple[list[Rule], float]:
    start = time.perf_counter()
    rules = [fitter(view, r) for r in rates]
    return rules, time.perf_counter() - start


def gap(x: float, ref: float) -> str:
    return f"{100 * (x - ref) / ref:+.1f}%"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--sources", default="", help="comma-separated experts (default: every expert; not the gate)")
    p.add_argument("--out", default="", help="write the tables to this markdown page")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats (median)")
    p.add_argument("--searches", default="", help="comma-separated indices of SEARCHES to prototype (default all)")
    p.add_argument(
        "--prototype", default="plugin_worst,plugin_balanced", help="comma-separated methods to prototype searches on"
    )
    args = p.parse_args(argv)
    args.prototype = [m for m in args.prototype.split(",") if m]
    cfg = load_run_config(args.config, args.overrides)
    sources = [s for s in args.sources.split(",") if s] or [s for s in folder_sources(cfg.out_dir) if s != "gating"]
    searches = [SEARCHES[int(i)] for i in args.searches.split(",") if i] or list(SEARCHES)
    rates = sorted(cfg.evaluate.rejection_grid)
    files = load_sources(run_folders(cfg.out_dir, sources), ["tune", "test"], run_manifest(cfg.out_dir))
    tune0 = files["tune"][0]
    groups = head_tail_groups(torch.tensor(tune0.class_counts), cfg.data.tail_max_count)
    _, fit_part = tune_parts(tune0.labels, cfg.gating.tune_fraction, cfg.seed)
    argse_ecfg = changed(cfg.evaluate, protocol="argse", search="grid")
    opts = fit_options(argse_ecfg)
    power = dataclasses.replace(opts, search="power")
    console = cli.console()
    out: list[str] = []

    def emit(line: str = "") -> None:
        console.print(line, markup=False, highlight=False)
        out.append(line)

    results: dict = {}
    timings: dict = {}
    started = time.perf_counter()
    for prior in PRIORS:
        for tune, test in zip(files["tune"], files["test"], strict=True):
            for probs in PROBS:
                ecfg = changed(argse_ecfg, test_prior=prior, protocol="argse" if probs == "calibrated" else "paper")
                fit = source_view(tune, fit_part, groups, ecfg)
                held = source_view(test, torch.arange(len(test.labels)), groups, ecfg)
                key = (prior, tune.expert, probs)
                t0 = time.perf_counter()
                brute = brute_force(fit, rates)
                timings[(*key, "brute")] = time.perf_counter() - t0
                for method, metric in METRIC.items():
                    res = results.setdefault((*key, method), {})
                    res["brute"] = curve(fit, held, brute.rules[metric], rates)
                    starts, secs = fitted(lambda v, r, m=method: fit_rule(m, v, r, power), fit, rates)
                    res["power"] = curve(fit, held, starts, rates)
                    rules, secs = fitted(lambda v, r, m=method: fit_rule(m, v, r, opts), fit, rates)
                    res["grid"] = curve(fit, held, rules, rates)
                    if probs == "calibrated" and method in args.prototype:
                        for search in searches:  # from the same Algorithm 1/2 rules: refine only differs
                            found = [refine(fit, st, r, metric, search) for st, r in zip(starts, rates, strict=True)]
                            res[search.name] = curve(fit, held, found, rates)
                console.print(
                    f"  {prior} {tune.expert} {probs}: {time.perf_counter() - started:.0f} s", highlight=False
                )

    def cell(prior, source, probs, method, label, side="test_aurc"):
        return getattr(results[(prior, source, probs, method)][label], side)[METRIC[method]]

    emit(f"# Plug-ins against a brute-force search of their family: {cfg.name}")
    emit()
    args = " ".join(sys.argv[1:] if argv is None else argv)
    emit(f"Written by `python -m studies.plugin_family {args}` at {provenance.commit()}.")
    emit(f"Sources {', '.join(sources)}; rejectors fitted on the rejector part of `tune` (n = {len(fit_part)}), "
         f"measured on `test` (n = {len(files['test'][0].labels)}); rates {rates[0]}..{rates[-1]}.")  # fmt: skip
    emit("Each cell is the method's own objective: balanced error for plugin_balanced, worst-group error for "
         "plugin_worst, as AURC over [0, 0.8] (the trapezoid mean over the target rates); `fit` is that on the "
         "fitting sample, `test` on test. argse = search: grid; Alg = search: power; brute = the brute force "
         "on the same probabilities; gap = argse relative to brute.")  # fmt: skip
    for prior in PRIORS:
        emit()
        emit(f"## Test prior: {prior}")
        emit()
        emit(
            "| source | method | probs | argse fit | brute fit | Alg fit | argse test | brute test | gap (test) | Alg test "
            "| rates where argse < brute on fit |"
        )
        emit("|---|---|---|---|---|---|---|---|---|---|---|")
        for source in sources:
            for method in METRIC:
                for probs in PROBS:
                    f = [cell(prior, source, probs, method, x, "fit_aurc") for x in ("grid", "brute", "power")]
                    t = [cell(prior, source, probs, method, x) for x in ("grid", "brute", "power")]
                    res = results[(prior, source, probs, method)]
                    pa, pb = res["grid"].fit_points[METRIC[method]], res["brute"].fit_points[METRIC[method]]
                    beaten = [
                        f"{r:g} ({100 * (y - x) / y:.1f}%)"
                        for r, x, y in zip(rates, pa, pb, strict=True)
                        if x < y - 1e-12
                    ]
                    emit(f"| {source} | {method} | {probs} | {f[0]:.4f} | {f[1]:.4f} | {f[2]:.4f} | {t[0]:.4f} | "
                         f"{t[1]:.4f} | {gap(t[0], t[1])} | {t[2]:.4f} | {', '.join(beaten) or 'none'} |")  # fmt: skip
    emit()
    emit("## Raw or calibrated, decided on the fitting sample")
    emit()
    emit("For each plug-in (argse's search: grid, and Algorithm 1/2 alone), the probabilities whose rules have the "
         "lower objective on the fitting sample (fit AURC), and what test then says.")  # fmt: skip
    emit()
    emit("| prior | source | method | search | fit: calibrated / raw | chosen | test: calibrated / raw | test agrees |")
    emit("|---|---|---|---|---|---|---|---|")
    tally: dict = {}
    for prior in PRIORS:
        for source in sources:
            for method in METRIC:
                for label, name in (("grid", "grid"), ("power", "power")):
                    fc, fr = (cell(prior, source, p, method, label, "fit_aurc") for p in PROBS)
                    tc, tr = (cell(prior, source, p, method, label) for p in PROBS)
                    chosen = "calibrated" if fc <= fr else "raw"
                    agrees = (tc <= tr) == (fc <= fr)
                    tally.setdefault((prior, method, name), []).append(chosen)
                    emit(f"| {prior} | {source} | {method} | {name} | {fc:.4f} / {fr:.4f} | {chosen} | "
                         f"{tc:.4f} / {tr:.4f} | {'yes' if agrees else 'no'} |")  # fmt: skip
    emit()
    emit("| prior | method | search | sources choosing calibrated | raw |")
    emit("|---|---|---|---|---|")
    for (prior, method, name), chosen in tally.items():
        emit(f"| {prior} | {method} | {name} | {chosen.count('calibrated')} | {chosen.count('raw')} |")
    emit()
    emit("## Search variants (calibrated probabilities)")
    emit()
    emit("Algorithm 1/2 (argse's, search: power) followed by a variant of `rejectors.refine`; the first is today's "
         "refine, reimplemented here (its figures equal argse's grid column above). Gap: relative to the brute "
         "force, on fit and on test. Seconds: the whole rate grid, one source, this run.")  # fmt: skip
    for method in args.prototype:
        emit()
        emit(f"### {method}")
        emit()
        emit(
            "| search | prior | mean fit gap | max fit gap | mean test gap | max test gap | sources within 2% (test) |"
        )
        emit("|---|---|---|---|---|---|---|")
        for search in searches:
            for prior in PRIORS:
                fg = [cell(prior, s, "calibrated", method, search.name, "fit_aurc")
                      / cell(prior, s, "calibrated", method, "brute", "fit_aurc") - 1 for s in sources]  # fmt: skip
                tg = [cell(prior, s, "calibrated", method, search.name)
                      / cell(prior, s, "calibrated", method, "brute") - 1 for s in sources]  # fmt: skip
                within = sum(g <= 0.02 for g in tg)
                emit(f"| {search.name} | {prior} | {100 * np.mean(fg):+.1f}% | {100 * max(fg):+.1f}% | "
                     f"{100 * np.mean(tg):+.1f}% | {100 * max(tg):+.1f}% | {within} / {len(sources)} |")  # fmt: skip
        emit()
        emit("| source | prior | brute test | " + " | ".join(s.name for s in searches) + " |")
        emit("|---|---|---|" + "---|" * len(searches))
        for prior in PRIORS:
            for source in sources:
                ref = cell(prior, source, "calibrated", method, "brute")
                vals = [cell(prior, source, "calibrated", method, s.name) for s in searches]
                emit(
                    f"| {source} | {prior} | {ref:.4f} | " + " | ".join(f"{v:.4f} ({gap(v, ref)})" for v in vals) + " |"
                )

    emit()
    emit(
        f"## Timings (median of {args.repeats}; seconds for the {len(rates)} rates, calibrated, one source, prior {PRIORS[0]})"
    )
    emit()
    source = sources[0]
    emit(f"Source {source}, this machine (shared CPUs). `fit_rule` = argse's whole fit today (Algorithm 1/2 then "
         "refine); the variants' columns time the refine step alone, from the same Algorithm 1/2 rules.")  # fmt: skip
    emit()
    emit(
        "| method | prior | fit_rule, power | fit_rule, grid | "
        + " | ".join(f"refine: {s.name}" for s in searches)
        + " |"
    )
    emit("|---|---|---|---|" + "---|" * len(searches))
    tune = files["tune"][sources.index(source)]
    for method in args.prototype:
        for prior in PRIORS[:1]:
            fit = source_view(tune, fit_part, groups, changed(argse_ecfg, test_prior=prior))
            starts = [fit_rule(method, fit, r, power) for r in rates]
            runs = [lambda v, r, m=method: fit_rule(m, v, r, power), lambda v, r, m=method: fit_rule(m, v, r, opts)]
            med = [statistics.median(fitted(fn, fit, rates)[1] for _ in range(args.repeats)) for fn in runs]
            for search in searches:
                secs = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    for st, r in zip(starts, rates, strict=True):
                        refine(fit, st, r, METRIC[method], search)
                    secs.append(time.perf_counter() - t0)
                med.append(statistics.median(secs))
            emit(f"| {method} | {prior} | " + " | ".join(f"{x:.2f}" for x in med) + " |")
    brute_secs = [v for k, v in timings.items() if k[-1] == "brute"]
    emit()
    emit(f"The brute force: {np.median(brute_secs):.1f} s per source, prior and probabilities (median), "
         f"{len(LOG_A) * len(THETA) + 1} grid candidates plus the finer grid. Whole study: "
         f"{time.perf_counter() - started:.0f} s.")  # fmt: skip
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
