"""Selective classification: Chow's rule and the plug-in rejectors of Narasimhan et al. (ICLR 2024).

Every rule here has one shape. With class probabilities p_y(x), groups [y] and per-group
vectors alpha, b:
    predict  argmax_y alpha_[y] p_y(x)
    accept   iff  s(x) = max_y alpha_[y] p_y(x) - sum_y b_[y] p_y(x)  >=  t      (t = -c)
Chow's rule is alpha = b = 1 (accept iff max_y p_y >= 1 - c). The cost-sensitive plug-in
(Algorithm 1) is alpha = beta / pi, b = beta / pi - mu. Because alpha and b are constant within
a group, s(x) and the prediction depend only on each group's top probability and mass, so a
rule costs O(N K) to apply and whole grids of multipliers are evaluated at once.

The cost c is never a free parameter: for a target rejection rate r, t is the r-quantile of
s on the fitting sample, so the rule rejects (up to ties) a fraction r of it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

METHODS = ("chow", "plugin_balanced", "plugin_worst")
# A group without accepted samples has undefined conditional error; it counts as all-wrong so that
# no rule can lower its group errors by rejecting a whole group.
EMPTY_GROUP_ERROR = 1.0


@dataclass
class GroupView:
    """Per-sample summaries of class probabilities by group; all a rule needs."""

    top: np.ndarray  # [N, K] highest probability among each group's classes
    mass: np.ndarray  # [N, K] total probability of each group's classes
    hit: np.ndarray  # [N, K] whether the group's top class is the true label
    group: np.ndarray  # [N] group of the true label
    k: int


def group_view(probs: np.ndarray, labels: np.ndarray, class_group: np.ndarray, k: int) -> GroupView:
    n = len(labels)
    top, mass, hit = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k), dtype=bool)
    for g in range(k):
        cls = np.flatnonzero(class_group == g)
        if len(cls) == 0:
            top[:, g] = -np.inf
            continue
        sub = probs[:, cls]
        arg = sub.argmax(1)
        top[:, g], mass[:, g], hit[:, g] = sub[np.arange(n), arg], sub.sum(1), cls[arg] == labels
    return GroupView(top, mass, hit, class_group[labels], k)


def subset(view: GroupView, idx: np.ndarray) -> GroupView:
    return GroupView(view.top[idx], view.mass[idx], view.hit[idx], view.group[idx], view.k)


def score(view: GroupView, alpha: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s(x) and correctness of the prediction, for rules stacked in the leading dims of alpha, b [..., K]."""
    # A loop over the (few) groups of whole [..., N] arrays: numpy reduces a tiny last axis slowly.
    best = correct = None
    s = 0.0
    for k in range(view.k):
        weighted = alpha[..., k, None] * view.top[:, k]
        s = s - b[..., k, None] * view.mass[:, k]
        if best is None:
            best, correct = weighted, np.broadcast_to(view.hit[:, k], weighted.shape)
        else:
            better = weighted > best  # ties keep the earlier group, as argmax does
            best = np.where(better, weighted, best)
            correct = np.where(better, view.hit[:, k], correct)
    return s + best, correct


def threshold(s: np.ndarray, rate: float) -> np.ndarray:
    """The smallest t with (about) a fraction ``rate`` of s below it, along the last axis."""
    n = s.shape[-1]
    kth = min(int(np.floor(rate * n)), n - 1)
    return np.partition(s, kth, axis=-1)[..., kth]


def group_rates(
    accepted: np.ndarray, correct: np.ndarray, group: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group error among accepted samples, coverage within the group, and the joint
    P(accepted, group) (accepted samples of the group / all samples), stacked over leading dims."""
    onehot = group[:, None] == np.arange(k)  # [N, K]
    acc_n = accepted.astype(float) @ onehot  # [..., K]
    err_n = (accepted & ~correct).astype(float) @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.where(acc_n > 0, err_n / acc_n, EMPTY_GROUP_ERROR)
    return err, acc_n / np.maximum(onehot.sum(0), 1), acc_n / len(group)


@dataclass
class Rule:
    alpha: np.ndarray  # [K]
    b: np.ndarray  # [K]
    t: float

    def apply(self, view: GroupView) -> tuple[np.ndarray, np.ndarray]:
        s, correct = score(view, self.alpha, self.b)
        return s >= self.t, correct


def fit_chow(view: GroupView, rate: float) -> Rule:
    one = np.ones(view.k)
    s, _ = score(view, one, one)
    return Rule(one, one, float(threshold(s, rate)))


def mu_candidates(k: int, grid: list[float]) -> np.ndarray:
    """Multiplier vectors: mu_0 = 0 (only differences matter) and a grid on the other coordinates."""
    return np.array([(0.0, *rest) for rest in itertools.product(grid, repeat=k - 1)])


def fit_plugin(view: GroupView, beta: np.ndarray, rate: float, mu_grid: list[float], iters: int) -> Rule:
    """Algorithm 1: for every mu on the grid, power-iterate the group acceptance pi; keep the best rule.

    pi_k is the joint P(accepted, y in G_k) on the fitting sample (accepted samples of group k over
    all samples): with it, beta_k / pi_k is the weight of an error in group k in sum_k beta_k e_k,
    which makes the rule the plug-in Bayes rule for that objective. The iteration starts from the
    group priors times the target coverage. Every rule built on the way is a candidate, so a
    degenerate fixed point (a group losing all its accepted samples) is never preferred to an
    earlier, better iterate.
    """
    mus = mu_candidates(view.k, mu_grid)  # [G, K]
    prior = np.bincount(view.group, minlength=view.k) / len(view.group)
    pi = np.maximum(prior * (1.0 - rate), 1e-4) * np.ones_like(mus)
    best = (np.inf, None)
    for _ in range(iters + 1):
        alpha = beta / pi
        b = alpha - mus
        s, correct = score(view, alpha, b)  # [G, N]
        t = threshold(s, rate)
        accepted = s >= t[:, None]
        err, _, joint = group_rates(accepted, correct, view.group, view.k)
        objective = err @ beta
        i = int(np.argmin(objective))
        if objective[i] < best[0]:
            best = (objective[i], Rule(alpha[i], b[i], float(t[i])))
        pi = np.maximum(joint, 1e-4)
    return best[1]


def fit_worst(
    view: GroupView, rate: float, mu_grid: list[float], iters: int, rounds: int, step: float, seed: int
) -> Rule:
    """Algorithm 2: exponentiated-gradient updates of beta on S2 against Algorithm 1 fitted on S1.

    Two choices beyond the paper's last iterate: the round whose rule has the lowest worst-group
    error on S2 supplies beta (the last iterate can overshoot: when one group's error cannot fall,
    beta keeps growing on it and the rule gives up the other groups for nothing), and the final
    rule is Algorithm 1 with that beta refitted on all of ``view`` (S1 and S2), not on half of it.
    """
    perm = np.random.default_rng(seed).permutation(len(view.group))
    s1, s2 = subset(view, perm[: len(perm) // 2]), subset(view, perm[len(perm) // 2 :])
    beta = np.full(view.k, 1.0 / view.k)
    best = (np.inf, beta)
    for _ in range(rounds):
        accepted, correct = fit_plugin(s1, beta, rate, mu_grid, iters).apply(s2)
        err, _, _ = group_rates(accepted, correct, s2.group, s2.k)
        if err.max() < best[0]:
            best = (err.max(), beta)
        beta = beta * np.exp(step * err)
        beta = beta / beta.sum()
    return fit_plugin(view, best[1], rate, mu_grid, iters)


def fit_rule(
    method: str,
    view: GroupView,
    rate: float,
    *,
    mu_grid: list[float],
    power_iters: int,
    worst_rounds: int,
    worst_step: float,
    seed: int,
) -> Rule:
    if method == "chow":
        rule = fit_chow(view, rate)
    elif method == "plugin_balanced":
        rule = fit_plugin(view, np.full(view.k, 1.0 / view.k), rate, mu_grid, power_iters)
    elif method == "plugin_worst":
        rule = fit_worst(view, rate, mu_grid, power_iters, worst_rounds, worst_step, seed)
    else:
        raise ValueError(method)
    # The cost c is set on the whole fitting sample so that the rule rejects the target fraction of it.
    s, _ = score(view, rule.alpha, rule.b)
    rule.t = float(threshold(s, rate))
    return rule


def evaluate_rule(rule: Rule, view: GroupView) -> dict[str, float | list[float]]:
    accepted, correct = rule.apply(view)
    err, cov, _ = group_rates(accepted, correct, view.group, view.k)
    n_acc = int(accepted.sum())
    return {
        "rejection_rate": 1.0 - n_acc / len(accepted),
        "error": float((accepted & ~correct).sum() / n_acc) if n_acc else EMPTY_GROUP_ERROR,
        "balanced_error": float(err.mean()),
        "worst_group_error": float(err.max()),
        "group_error": err.tolist(),
        "group_coverage": cov.tolist(),
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
