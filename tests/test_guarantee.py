"""Abstention with a guarantee (argse.selective.guarantee): on a finite population whose risks are exact, the
share of fitted rules whose true risk exceeds r stays within delta plus its binomial error."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from argse.selective.guarantee import Guarantee, Rung, ladder, select
from argse.selective.rejectors import FitOptions, Rule, evaluate_rule
from argse.selective.views import GroupView, group_view, subset
from tests.test_selective import MU_GRID


def population(n: int, seed: int, classes: int = 10, tail_from: int = 7) -> GroupView:
    """Ten classes, the last three a tail the model is less sure of; errors fall from about 0.3 to 0 with rejection."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += rng.uniform(0, 6, n)
    logits[:, tail_from:] -= 0.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return group_view(probs, labels, (np.arange(classes) >= tail_from).astype(int), 2)


POPULATION = population(20000, 11)  # the "true" distribution: fitting samples are drawn from it uniformly
TRIALS, N, DELTA = 200, 4000, 0.1
GRID = [round(0.05 * i, 2) for i in range(20)]


def true_risk(rule: Rule, of: str) -> float:
    row = evaluate_rule(rule, POPULATION)  # exact on the population
    return row["balanced_error"] if of == "balanced" else row["worst_group_error"]


def violations(of: str, risk: float, trials: int = TRIALS, trusting: bool = False) -> tuple[int, int]:
    """(rules whose true risk exceeds ``risk``, rules kept) over independent fitting samples; ``trusting`` takes
    the empirical risk of the second half as if it were the bound (no guarantee: the negative control)."""
    rng = np.random.default_rng(0)
    target = Guarantee((risk,), DELTA, of)
    bad = kept = 0
    for trial in range(trials):
        sample = subset(POPULATION, rng.integers(0, len(POPULATION.group), N))
        rungs = ladder("chow", sample, GRID, FitOptions(MU_GRID, seed=trial))
        if trusting:
            rungs = [Rung(r.rule, r.rate, r.plan, replace(r.test, size=np.full(2, np.inf))) for r in rungs]
        chosen = select(rungs, target).rung
        if chosen is not None:
            kept += 1
            bad += true_risk(chosen.rule, of) > risk
    return bad, kept


def allowed(trials: int, delta: float) -> float:
    return trials * delta + 3 * math.sqrt(trials * delta * (1 - delta))


@pytest.mark.parametrize("of,risk", [("worst", 0.15), ("balanced", 0.12)])
def test_violations_stay_within_delta_over_200_fitting_samples(of, risk):
    bad, kept = violations(of, risk)
    assert kept >= TRIALS * 0.9, kept  # the guarantee is not vacuous: nearly every sample keeps a rule
    assert bad <= allowed(TRIALS, DELTA), (bad, kept)


def test_trusting_the_empirical_risk_violates_often():
    """The negative control: with no bound, about half of the kept rules exceed the target, so the test above
    can fail."""
    bad, kept = violations("worst", 0.15, trials=60, trusting=True)
    assert bad > allowed(60, DELTA), (bad, kept)


@pytest.mark.parametrize("of", ["worst", "balanced"])
def test_the_smallest_guarantee_named_is_the_one_the_ladder_meets(of):
    """When a target is not met, the sentence names the smallest risk the ladder can guarantee: asked for that
    risk, a rule is kept; asked for a little less, none."""
    sample = subset(POPULATION, np.random.default_rng(5).integers(0, len(POPULATION.group), 1500))
    rungs = ladder("chow", sample, GRID, FitOptions(MU_GRID, seed=5))
    missed = select(rungs, Guarantee((0.01,), DELTA, of))
    assert missed.rung is None
    smallest = missed.closest * 0.01
    assert select(rungs, Guarantee((smallest * (1 + 1e-9),), DELTA, of)).rung is not None
    assert select(rungs, Guarantee((smallest * (1 - 1e-6),), DELTA, of)).rung is None
    message = missed.unmet(Guarantee((0.01,), DELTA, of), "ce / chow")
    assert f"the smallest it can guarantee at this delta is {smallest:.4f}" in message and "\n" not in message


def test_per_group_risks_are_each_met():
    """risk_of groups: one target per group, each group's bound at most its own target."""
    sample = subset(POPULATION, np.random.default_rng(6).integers(0, len(POPULATION.group), N))
    rungs = ladder("chow", sample, GRID, FitOptions(MU_GRID, seed=6))
    target = Guarantee((0.1, 0.3), DELTA, "groups")
    chosen = select(rungs, target)
    assert chosen.rung is not None and (chosen.bound <= np.array([0.1, 0.3])).all()
    assert len(chosen.bound) == 2
