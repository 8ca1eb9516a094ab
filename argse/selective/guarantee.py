"""Abstention with a guarantee: the rule of largest coverage whose selective risk is at most r with probability at
least 1 - delta over the fitting sample, by Learn then Test (Angelopoulos, Bates, Candes, Jordan and Lei, 2021)
with fixed-sequence testing.

The fitting sample (the rejector part of ``tune``) is split in two by the seed. On the first half a ladder of
candidate rules is fixed: each registered rejector fitted at the sweep's rates gives a rule shape (alpha, b), and
every rejection rate q = 0.99, 0.98, ..., 0 the threshold rejecting q of that half, with the shape fitted nearest
to q. On the second half each rung keeps, per group k, its weighted share of accepted errors E_k, its coverage C_k
and the effective size n_k = (sum w)^2 / sum w^2 of the group (w: the evaluation's prior weights).

The selective risk of group k, e_k = P(wrong | accepted, G_k), is at most a iff the loss
err * accepted + a * (1 - accepted), bounded in [0, 1], has mean at most a (LTT's form for a risk conditional on
acceptance). Hoeffding's inequality for weighted sums of independent bounded terms makes the p-value of
"e_k > a" exp(-2 n_k (a C_k - E_k)_+^2), and inverted, the upper bound  U_k(d) = (E_k + sqrt(ln(1/d) / (2 n_k))) / C_k.
A rung passes when
    worst   every U_k(delta) <= r        (intersection-union: each group tested at delta)
    groups  every U_k(delta) <= r_k      (one risk per group)
    balanced  mean_k U_k(delta / K) <= r  (Bonferroni over the K bounds)
The same figures on the first half fix where the test starts: at the rung whose first-half bound is lowest
relative to r (at high rejection rates a bound on a handful of accepted samples is vacuous, so starting at the
top would stop at once). From there rungs are tested toward more coverage, and the last to pass before the first
failure is kept: fixed-sequence testing keeps the chance that any passed rung has risk above r at most delta,
with no correction for the number of rungs, because their order was fixed on the other half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from argse.selective.rejectors import FitOptions, Rule, evaluate_rule, fit_rule
from argse.selective.views import GroupView, score, subset, threshold

Of = Literal["balanced", "worst", "groups"]
STEP = 0.01  # the ladder's step in rejection rate, on the first half


@dataclass(frozen=True)
class Tally:
    """Per group k of one half: the weighted share of the group accepted and wrong, accepted, and its effective
    sample size."""

    errors: np.ndarray  # [K]
    coverage: np.ndarray  # [K]
    size: np.ndarray  # [K]

    @classmethod
    def of(cls, rule: Rule, view: GroupView) -> Tally:
        per_group = view.group_weight  # [N, K]
        total = np.maximum(per_group.sum(0), 1e-300)
        accepted, correct = rule.apply(view)
        # shares of sums of weights: clipped to [0, 1], where float sums can leave them by 1e-16
        errors = np.clip(((accepted & ~correct).astype(float) @ per_group) / total, 0.0, 1.0)
        coverage = np.clip((accepted.astype(float) @ per_group) / total, 0.0, 1.0)
        size = per_group.sum(0) ** 2 / np.maximum((per_group**2).sum(0), 1e-300)
        return cls(errors, coverage, size)

    def bounds(self, delta: float) -> np.ndarray:
        """[K] upper confidence bounds on each group's selective risk, each holding with probability 1 - delta."""
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (self.errors + np.sqrt(math.log(1 / delta) / (2 * self.size))) / self.coverage
        return np.where(self.coverage > 0, u, np.inf)


@dataclass(frozen=True)
class Rung:
    """One candidate rule, the rejected share of the first half, and its tallies on each half."""

    rule: Rule
    rate: float
    plan: Tally  # the first half's: where testing starts
    test: Tally  # the second half's: the test itself

    def record(self) -> dict:
        r = self.rule
        return {"rate": self.rate, "alpha": r.alpha.tolist(), "b": r.b.tolist(), "t": r.t,
                **{f"{half}_{k}": getattr(getattr(self, half), k).tolist()
                   for half in ("plan", "test") for k in ("errors", "coverage", "size")}}  # fmt: skip

    @classmethod
    def of_record(cls, rec: dict) -> Rung:
        rule = Rule(np.asarray(rec["alpha"], float), np.asarray(rec["b"], float), float(rec["t"]))
        tallies = [Tally(*(np.asarray(rec[f"{half}_{k}"], float) for k in ("errors", "coverage", "size")))
                   for half in ("plan", "test")]  # fmt: skip
        return cls(rule, float(rec["rate"]), *tallies)


@dataclass(frozen=True)
class Guarantee:
    """A target: risk ``risk`` (one per group for ``of`` groups) with probability at least 1 - ``delta``."""

    risk: tuple[float, ...]
    delta: float
    of: Of

    def bound(self, tally: Tally) -> np.ndarray:
        """The bound on the risk guaranteed: one number, or one per group for ``groups``."""
        k = len(tally.errors)
        if self.of == "balanced":
            return np.array([tally.bounds(self.delta / k).mean()])
        u = tally.bounds(self.delta)
        return u if self.of == "groups" else np.array([u.max()])

    def ratio(self, tally: Tally) -> float:
        """How far the bound is from the target: its largest ratio to the risk (at most 1: met)."""
        return float(np.max(self.bound(tally) / np.asarray(self.risk)))

    def describe(self) -> str:
        risk = ", ".join(f"{r:g}" for r in self.risk)
        what = {"balanced": "balanced error", "worst": "worst-group error", "groups": "error of each group"}[self.of]
        return f"{what} at most {risk} with probability {1 - self.delta:g}"


def ladder(method: str, view: GroupView, rates: list[float], opts: FitOptions) -> list[Rung]:
    """The candidate rules of ``method`` fixed on one half of ``view`` and measured on the other, most rejecting
    first."""
    perm = np.random.default_rng([opts.seed, 0x1A77E5]).permutation(len(view.group))
    first, second = subset(view, perm[: len(perm) // 2]), subset(view, perm[len(perm) // 2 :])
    shapes = {r: fit_rule(method, first, r, opts) for r in sorted(rates)}
    rungs = []
    for q in np.round(np.arange(1 - STEP, -STEP / 2, -STEP), 6):
        shape = shapes[min(shapes, key=lambda r: (abs(r - q), r))]
        s, _ = score(first, shape.alpha, shape.b)
        rule = Rule(shape.alpha, shape.b, float(threshold(s, float(q), first.weight)))
        rungs.append(Rung(rule, float(q), Tally.of(rule, first), Tally.of(rule, second)))
    return rungs


@dataclass(frozen=True)
class Selection:
    """The rung kept (None: none passed) and the bound it carries; ``closest``: the ratio of the first tested rung's
    bound to the target risk (for groups, its largest over the groups), so the target times it is the smallest
    this ladder can guarantee, for the sentence when none passes."""

    rung: Rung | None
    bound: np.ndarray | None
    closest: float

    def unmet(self, target: Guarantee, what: str) -> str:
        """Why no rule of ``what`` is kept, with the smallest risk that could be guaranteed instead."""
        if len(target.risk) == 1:
            reach = f"the smallest it can guarantee at this delta is {self.closest * target.risk[0]:.4f}"
        else:
            reach = f"its closest rule reaches {self.closest:.2f} times each group's target"
        return (f"no rule of {what} meets {target.describe()} on the fitting sample ({reach}); ask for a larger risk "
                f"or delta, or fit on more samples")  # fmt: skip


def select(rungs: list[Rung], target: Guarantee) -> Selection:
    """Fixed-sequence testing from the rung the first half finds safest toward more coverage: the last rung to
    pass before the first that fails."""
    start = int(np.argmin([target.ratio(r.plan) for r in rungs]))
    kept = None
    for rung in rungs[start:]:
        if target.ratio(rung.test) > 1:
            break
        kept = rung
    # The target scaled by this ratio is the smallest the test would pass: the first rung tested meets it exactly.
    closest = target.ratio(rungs[start].test)
    return Selection(kept, None if kept is None else target.bound(kept.test), closest)


def achieved(rungs: list[Rung], target: Guarantee, test: GroupView) -> dict:
    """The rule ``target`` keeps on the ladder and what it reaches on ``test``: the risk guaranteed (for groups,
    each group's error) and the coverage, under the test view's weights; ``met`` False when no rule is kept."""
    chosen = select(rungs, target)
    row = {"risk_of": target.of, "risk": list(target.risk), "delta": target.delta, "met": chosen.rung is not None,
           "closest": chosen.closest}  # fmt: skip
    if chosen.rung is None:
        return row
    m = evaluate_rule(chosen.rung.rule, test)
    risk = {"balanced": [m["balanced_error"]], "worst": [m["worst_group_error"]], "groups": m["group_error"]}
    return row | {"bound": chosen.bound.tolist(), "fit_rate": chosen.rung.rate, "test_risk": risk[target.of],
                  "test_coverage": 1.0 - m["rejection_rate"], "within": bool(np.all(
                      np.asarray(risk[target.of]) <= np.asarray(target.risk)))}  # fmt: skip
