"""The rejectors: Chow's rule and the plug-in rejectors of Narasimhan et al. (ICLR 2024), fitted to a
target rejection rate on a source's group view, and the AURC of their curves.

Every rule has the shape of argse.selective.views. The cost-sensitive plug-in (Algorithm 1) is
alpha = beta / pi, b = beta / pi - mu; Algorithm 2 (worst group) reweights the groups by exponentiated
gradient. The cost c is never a free parameter: for a target rejection rate r, t is the r-quantile of
s on the fitting sample, so the rule rejects (up to ties) a fraction r of it.

A rejector is one function ``(view, rate, options) -> Rule`` registered under a name with
``@register_rejector("name")`` (plugins too, by config or the ``argse.rejectors`` entry point);
:func:`fit_rule` calls it and sets the threshold.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from argse.core.errors import ArgseError
from argse.core.registry import Registry
from argse.selective.views import (
    EMPTY_GROUP_ERROR,
    GroupView,
    accepted_errors,
    group_rates,
    score,
    subset,
    threshold,
    weighted_top,
)


@dataclass
class Rule:
    alpha: np.ndarray  # [K]
    b: np.ndarray  # [K]
    t: float

    def apply(self, view: GroupView) -> tuple[np.ndarray, np.ndarray]:
        s, correct = score(view, self.alpha, self.b)
        return s >= self.t, correct


@dataclass(frozen=True)
class FitOptions:
    """How the rejectors are fitted (docs/selective.md, "Protocol", for the two protocols)."""

    mu_grid: tuple[float, ...]
    power_iters: int = 10  # M of Algorithm 1
    worst_rounds: int = 10  # T of Algorithm 2
    worst_step: float = 1.0  # xi of Algorithm 2
    seed: int = 0
    every_iterate: bool = True  # every power iterate is a candidate (paper: the last one per multiplier)
    best_round: bool = True  # Algorithm 2 keeps the round with the lowest worst-group error on S2 (paper: the last)
    refit_all: bool = True  # Algorithm 2's rule is refitted on S1 and S2 (paper: fitted on S1)
    search: str = "power"  # "grid": then refine the rule's weights directly on the fitting sample
    fixed_cost: bool = False  # Algorithm 1 at a fixed cost c found for the rate (paper), not at a fixed rate
    coarse: int = 21  # search: grid: a coarse grid of this many points per free weight first (0: none)
    starts: int = 3  # search: grid, with coarse: local searches also from this many best distinct candidates


Rejector = Callable[[GroupView, float, FitOptions], Rule]
"""(fitting view, target rejection rate, options) -> a rule; fit_rule then sets its threshold."""
REJECTORS: Registry[Rejector] = Registry("rejector", "argse.rejectors")
register_rejector = REJECTORS.register


def mu_candidates(k: int, grid: tuple[float, ...]) -> np.ndarray:
    """Multiplier vectors: mu_0 = 0 (only differences matter) and a grid on the other coordinates."""
    return np.array([(0.0, *rest) for rest in itertools.product(grid, repeat=k - 1)])


# Candidate rules are scored in blocks of about this many (rule, sample) pairs, so that each block's
# arrays stay in the CPU cache from the score through the sort to the group sums: on 2 busy cores,
# about twice as fast as scoring a whole grid at once (docs/performance.md).
BLOCK = 1 << 16
# Objectives closer than this count as tied, and a tie goes to the earlier candidate. Error rates are
# sums of sample weights, and BLAS rounds the same sum differently in different rows of a product
# (by ~1e-16), so without it exact ties would be broken by rounding, differently for every block size.
TIE = 1e-12


def first_min(objective: np.ndarray) -> int:
    """Index of the first objective within TIE of the smallest."""
    return int(np.argmax(objective <= objective.min() + TIE))


def lower(a: float, b: float) -> bool:
    """Whether objective a is lower than b by more than a tie."""
    return a < b - TIE


def objectives(view: GroupView, alpha: np.ndarray, b: np.ndarray, rate: float, beta: np.ndarray | None):
    """Objective of rules stacked in alpha, b [G, K] at the target rate: sum_k beta_k e_k, or the
    worst group error when beta is None; also their thresholds and joint group acceptances."""
    step = max(1, BLOCK // len(view.group))
    tops = shared_tops(view, alpha)
    parts = [
        _objectives(view, alpha[i : i + step], b[i : i + step], rate, beta, None if tops is None else tops(i, step))
        for i in range(0, len(alpha), step)
    ]
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


# Rules whose alpha repeats (a local search grid holds 15 alphas in 225 rules, Algorithm 1 one alpha for every mu
# at first) share max_k alpha_k top_k: it is made once per distinct alpha when they are at most half the rules
# and fit in this many elements.
SHARED_TOPS = 1 << 20


def shared_tops(view: GroupView, alpha: np.ndarray) -> Callable[[int, int], tuple] | None:
    """The weighted tops of the rows i..i+step of alpha from those of its distinct rows, or None."""
    # Rows are told apart by one number each (np.unique over rows costs about 8x more, and most calls have no
    # repeats); rows that share a number but differ are caught below and scored one by one.
    key = alpha @ (1.0 + np.arange(alpha.shape[1]) / np.pi)
    order = np.argsort(key, kind="stable")
    starts = np.ones(len(key), bool)
    np.not_equal(key[order[1:]], key[order[:-1]], out=starts[1:])
    distinct = int(starts.sum())
    if 2 * distinct > len(alpha) or distinct * len(view.group) > SHARED_TOPS:
        return None
    back = np.empty(len(key), np.int64)
    back[order] = np.cumsum(starts) - 1
    rows = alpha[order[starts]]
    if not np.array_equal(rows[back], alpha):
        return None
    best, correct = weighted_top(view, rows)
    return lambda i, step: (best[back[i : i + step]], correct[back[i : i + step]])


def _objectives(view: GroupView, alpha: np.ndarray, b: np.ndarray, rate: float, beta: np.ndarray | None, tops):
    if tops is None:
        s, correct = score(view, alpha, b)  # [G, N]
    else:
        s, correct = tops
        s -= b @ view.columns[1]  # as score() does
    t = threshold(s, rate, view.weight)
    err, acc_n = accepted_errors(s >= t[:, None], correct, view.group_weight)
    return (err.max(-1) if beta is None else err @ beta), t, acc_n / view.weight.sum()


def fit_plugin(view: GroupView, beta: np.ndarray, rate: float, opts: FitOptions) -> Rule:
    """Algorithm 1: for every mu on the grid, power-iterate the group acceptance pi; keep the best rule.

    pi_k is the joint P(accepted, y in G_k) on the fitting sample (under its sample weights): with
    it, beta_k / pi_k is the weight of an error in group k in sum_k beta_k e_k, which makes the rule
    the plug-in Bayes rule for that objective. The iteration starts from the group priors times the
    target coverage. With ``every_iterate`` every rule built on the way is a candidate, so a
    degenerate fixed point (a group losing all its accepted samples) is never preferred to an
    earlier, better iterate; otherwise only the last iterate of each multiplier competes.
    """
    if opts.fixed_cost:
        return fit_plugin_fixed_cost(view, beta, rate, opts)
    mus = mu_candidates(view.k, opts.mu_grid)  # [G, K]
    prior = np.bincount(view.group, weights=view.weight, minlength=view.k) / view.weight.sum()
    pi = np.maximum(prior * (1.0 - rate), 1e-4) * np.ones_like(mus)
    objective, t, joint = np.zeros(len(mus)), np.zeros(len(mus)), np.zeros_like(mus)
    best, previous = (np.inf, None), None
    for it in range(opts.power_iters + 1):
        alpha = beta / pi
        b = alpha - mus
        # A multiplier whose pi came back unchanged has the rule it had: its figures are those already found
        # (most multipliers reach their fixed point within a few iterations).
        fresh = np.ones(len(mus), bool) if previous is None else (pi != previous).any(1)
        if fresh.any():
            objective[fresh], t[fresh], joint[fresh] = objectives(view, alpha[fresh], b[fresh], rate, beta)
        i = first_min(objective)
        if (opts.every_iterate or it == opts.power_iters) and lower(objective[i], best[0]):
            best = (objective[i], Rule(alpha[i], b[i], float(t[i])))
        previous, pi = pi, np.maximum(joint, 1e-4)
    return best[1]


# Bisection steps for the cost c at which Algorithm 1 (fixed-cost form) rejects the target rate, and the
# bracket of c: every score s = max_y alpha p - sum_y b p lies within it (alpha = beta / pi <= 1 / 1e-4).
COST_STEPS, COST_BOUND = 40, 3e4


def plugin_at_cost(view: GroupView, beta: np.ndarray, cost: float, opts: FitOptions) -> tuple[Rule, float]:
    """Algorithm 1 as Narasimhan et al. state it (Sec. 4.2, Algorithm 1): at rejection cost c (accept iff
    s(x) >= -c at every iterate), M rules per multiplier, each built from the previous one's group
    acceptance, starting from the group priors; the last rule of the best multiplier, and the share of
    the fitting weight it rejects."""
    mus = mu_candidates(view.k, opts.mu_grid)
    prior = np.bincount(view.group, weights=view.weight, minlength=view.k) / view.weight.sum()
    pi = np.maximum(prior, 1e-4) * np.ones_like(mus)
    rules = max(1, opts.power_iters)
    for m in range(rules):
        alpha = beta / pi
        b = alpha - mus
        s, correct = score(view, alpha, b)
        accepted = s >= -cost
        err, _, joint = group_rates(accepted, correct, view.group, view.k, view.weight)
        if m < rules - 1:
            pi = np.maximum(joint, 1e-4)
    i = first_min(err @ beta)
    rejected = 1.0 - float(view.weight @ accepted[i]) / float(view.weight.sum())
    return Rule(alpha[i], b[i], -cost), rejected


def fit_plugin_fixed_cost(view: GroupView, beta: np.ndarray, rate: float, opts: FitOptions) -> Rule:
    """Algorithm 1 at the cost c whose rule rejects ``rate`` of the fitting sample, c found by bisection (a
    higher cost rejects less); fit_rule then sets t to the rate's quantile, as for every method."""
    lo, hi = -COST_BOUND, COST_BOUND
    for _ in range(COST_STEPS):
        mid = (lo + hi) / 2
        if plugin_at_cost(view, beta, mid, opts)[1] > rate:
            lo = mid
        else:
            hi = mid
    return plugin_at_cost(view, beta, hi, opts)[0]


def fit_worst(view: GroupView, rate: float, opts: FitOptions) -> Rule:
    """Algorithm 2: exponentiated-gradient updates of beta on S2 against Algorithm 1 fitted on S1.

    The paper returns the last round's rule, fitted on S1. argse's default differs in two ways: the
    round whose rule has the lowest worst-group error on S2 supplies beta (the last iterate can
    overshoot: when one group's error cannot fall, beta keeps growing on it and the rule gives up
    the other groups for nothing), and the final rule is Algorithm 1 with that beta refitted on all
    of ``view`` (S1 and S2), not on half of it.
    """
    perm = np.random.default_rng(opts.seed).permutation(len(view.group))
    s1, s2 = subset(view, perm[: len(perm) // 2]), subset(view, perm[len(perm) // 2 :])
    beta = np.full(view.k, 1.0 / view.k)
    best = (np.inf, beta, None)
    for _ in range(opts.worst_rounds):
        rule = fit_plugin(s1, beta, rate, opts)
        accepted, correct = rule.apply(s2)
        err, _, _ = group_rates(accepted, correct, s2.group, s2.k, s2.weight)
        if not opts.best_round or lower(err.max(), best[0]):
            best = (err.max(), beta, rule)
        beta = beta * np.exp(opts.worst_step * err)
        beta = beta / beta.sum()
    return fit_plugin(view, best[1], rate, opts) if opts.refit_all else best[2]


def refine(view: GroupView, rule: Rule, rate: float, beta: np.ndarray | None, opts: FitOptions) -> Rule:
    """Search the rule family directly on the fitting sample, starting from ``rule``.

    A rule is invariant to scaling (alpha, b, t) and to adding a constant to b (absorbed by t at a
    fixed rate), so with alpha_0 = 1 and b_0 fixed each other group k has two free weights:
    log alpha_k and mu_k = alpha_k - b_k. ``rule``, Chow's rule and (with ``opts.coarse``) a coarse
    grid over the whole family are scored; from the better of the first two and the ``opts.starts`` best
    other distinct candidates a local search zooms in on each group's two weights. A candidate replaces the incumbent only if it lowers the
    objective, so the result is never worse than ``rule`` or Chow's rule on ``view``.
    """
    alpha, b = rule.alpha / rule.alpha[0], rule.b / rule.alpha[0]
    starts = search_starts(view, alpha, b, rate, beta, opts)
    best = starts[0]
    for start in starts:
        found = zoom(view, start, rate, beta)
        if lower(found[0], best[0]):
            best = found
    return Rule(best[1], best[2], rule.t)


# The coarse grid of refine: per group, log alpha_k over [-COARSE_SPAN, COARSE_SPAN] and the direction of
# (alpha_k, b_k - b_0) over the half circle, so mu_k covers the whole line (studies/plugin_family.py: with 21 x 21
# and 3 starts, plugin_worst comes within 2% of a brute-force search of its family on the fitting sample).
COARSE_SPAN = 4.0


def search_starts(view, alpha, b, rate, beta, opts: FitOptions) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(objective, alpha, b) of the starts of the local search: the better of ``rule`` and Chow's rule (ties
    keep ``rule``), then with a coarse grid the ``opts.starts`` best other distinct candidates."""
    one = np.ones(view.k)
    alphas, bs = [alpha, one], [b, one]
    for k in range(1, view.k) if opts.coarse else ():
        for la in np.linspace(-COARSE_SPAN, COARSE_SPAN, opts.coarse):
            for angle in np.linspace(-np.pi / 2, np.pi / 2, opts.coarse + 2)[1:-1]:
                a2, b2 = alpha.copy(), b.copy()
                a2[k] = np.exp(la)
                b2[k] = b[0] + max(1.0, a2[k]) * np.tan(angle)
                alphas.append(a2)
                bs.append(b2)
    objective = objectives(view, np.array(alphas), np.array(bs), rate, beta)[0]
    # The better of ``rule`` and Chow's rule always starts (the search as it was, so the result is never worse
    # than it), then the best other distinct candidates.
    picked = [first_min(objective[:2])]
    for i in np.argsort(objective, kind="stable"):
        if len(picked) > opts.starts:
            break
        if not any(np.allclose(alphas[i], alphas[j]) and np.allclose(bs[i], bs[j]) for j in picked):
            picked.append(int(i))
    picked = picked[: 1 + opts.starts] if opts.coarse else picked[:1]
    return [(float(objective[i]), alphas[i], bs[i]) for i in picked]


def zoom(view, start, rate, beta, points: int = 15, zooms: int = 3) -> tuple[float, np.ndarray, np.ndarray]:
    """For each group in turn, a 2-D grid of log alpha_k and mu_k around the incumbent, scored and zoomed in
    (a local search: with two groups it moves both free weights)."""
    best, alpha, b = start
    for k in range(1, view.k):
        span_log, span_mu = 3.0, 2.0 * max(1.0, alpha[k])
        for _ in range(zooms):
            la = np.log(alpha[k]) + np.linspace(-span_log, span_log, points)
            mu = alpha[k] - b[k] + np.linspace(-span_mu, span_mu, points)
            la, mu = (x.ravel() for x in np.meshgrid(la, mu))
            alphas, bs = np.tile(alpha, (len(la), 1)), np.tile(b, (len(la), 1))
            alphas[:, k] = np.exp(la)
            bs[:, k] = alphas[:, k] - mu
            objective, _, _ = objectives(view, alphas, bs, rate, beta)
            i = first_min(objective)
            if lower(objective[i], best):
                best, alpha, b = float(objective[i]), alphas[i], bs[i]
            span_log, span_mu = span_log / 4, span_mu / 4
    return best, alpha, b


@register_rejector("chow")
def chow(view: GroupView, rate: float, opts: FitOptions) -> Rule:
    """Chow's rule: accept iff the top probability clears 1 - c."""
    one = np.ones(view.k)
    return Rule(one, one, 0.0)


@register_rejector("plugin_balanced")
def plugin_balanced(view: GroupView, rate: float, opts: FitOptions) -> Rule:
    """Algorithm 1 for the balanced error (beta = 1/K), refined on the fitting sample under search: grid."""
    beta = np.full(view.k, 1.0 / view.k)
    rule = fit_plugin(view, beta, rate, opts)
    return refine(view, rule, rate, beta, opts) if opts.search == "grid" else rule


@register_rejector("plugin_worst")
def plugin_worst(view: GroupView, rate: float, opts: FitOptions) -> Rule:
    """Algorithm 2 for the worst-group error, refined on the fitting sample under search: grid."""
    rule = fit_worst(view, rate, opts)
    return refine(view, rule, rate, None, opts) if opts.search == "grid" else rule


def fit_rule(method: str, view: GroupView, rate: float, opts: FitOptions) -> Rule:
    """The registered rejector ``method`` fitted on ``view`` at ``rate``."""
    rule = checked(method, REJECTORS.get(method)(view, rate, opts), view.k)
    # The cost c is set on the whole fitting sample so that the rule rejects the target fraction of it.
    s, _ = score(view, rule.alpha, rule.b)
    rule.t = float(threshold(s, rate, view.weight))
    return rule


def checked(method: str, rule, k: int) -> Rule:
    """What a (plugin) rejector returned, as a Rule with one finite alpha and b per group, or one sentence
    naming the rejector."""
    if not isinstance(rule, Rule):
        raise ArgseError(f"rejector '{method}' returned {type(rule).__name__}; a rejector returns a Rule(alpha, b, t)")
    for name in ("alpha", "b"):
        v = np.asarray(getattr(rule, name), dtype=float) if np.ndim(getattr(rule, name)) else None
        if v is None or v.shape != (k,) or not np.isfinite(v).all():
            raise ArgseError(
                f"rejector '{method}' returned {name} {np.asarray(getattr(rule, name)).tolist()!r:.60}; a rule "
                f"has one finite {name} per group ({k})"
            )
        setattr(rule, name, v)
    return rule


def evaluate_rule(rule: Rule, view: GroupView) -> dict[str, float | list[float]]:
    """Rates of ``rule`` on ``view``, every one under the view's sample weights, and the groups accepting nothing."""
    accepted, correct = rule.apply(view)
    err, cov, _ = group_rates(accepted, correct, view.group, view.k, view.weight)
    w_acc = float(view.weight @ accepted)
    return {
        "rejection_rate": 1.0 - w_acc / float(view.weight.sum()),
        "error": float(view.weight @ (accepted & ~correct)) / w_acc if w_acc else EMPTY_GROUP_ERROR,
        "balanced_error": float(err.mean()),
        "worst_group_error": float(err.max()),
        "group_error": err.tolist(),
        "group_coverage": cov.tolist(),
        # groups that accept nothing here: their error above is EMPTY_GROUP_ERROR, a convention, not a measurement
        "empty_groups": np.flatnonzero(cov == 0).tolist(),
    }


def aurc(rates: list[float], errors: list[float], lo: float = 0.0, hi: float = 1.0) -> float:
    """Mean of the error curve over [lo, hi]: trapezoid area on the linearly interpolated curve
    divided by (hi - lo); beyond the last measured rate the curve is held at its last value."""
    x, y = np.asarray(rates, float), np.asarray(errors, float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    inside = (x > lo) & (x < hi)
    xs = np.concatenate([[lo], x[inside], [hi]])
    ys = np.interp(xs, x, y)  # np.interp holds the end values outside the data
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / (hi - lo))
