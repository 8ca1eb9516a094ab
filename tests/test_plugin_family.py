"""The brute force of studies.plugin_family: exact against argse.selective, a hand-worked case, and no worse
than argse's grid search on the fitting objective (on synthetic views; real figures: docs/results)."""

import numpy as np
import pytest

from argse.selective.rejectors import FitOptions, evaluate_rule, fit_rule
from argse.selective.views import GroupView, group_view
from studies import plugin_family as pf

RATES = [0.0, 0.1, 0.25, 0.4, 0.6, 0.8]


def synthetic_view(n: int = 240, seed: int = 0, weighted: bool = True) -> GroupView:
    """Four classes (0, 1 head; 2, 3 tail), logits with some signal, tail less confident; train-prior weights."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    logits = rng.normal(0, 1, (n, 4))
    logits[np.arange(n), labels] += np.where(labels < 2, 2.0, 0.8)
    logits[:, :2] += 0.7  # a head bias, as a model trained on long-tailed data has
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    weight = np.where(labels < 2, 3.0, 0.5) if weighted else None
    return group_view(probs, labels, np.array([0, 0, 1, 1]), 2, weight)


def hand_view() -> GroupView:
    """Four samples; head = group 0, tail = group 1 (two tail classes in sample 1)."""
    top = np.array([[0.9, 0.1], [0.6, 0.25], [0.7, 0.3], [0.2, 0.8]])
    mass = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    hit = np.array([[True, False], [False, False], [False, True], [False, True]])
    return GroupView(top, mass, hit, np.array([0, 0, 1, 1]), 2, np.ones(4))


@pytest.mark.parametrize("weighted", [True, False])
def test_family_objectives_equal_argse_selective(weighted):
    view = synthetic_view(weighted=weighted)
    view.top[:7] = view.top[7:14]  # tied scores too
    view.mass[:7], view.hit[:7], view.group[:7] = view.mass[7:14], view.hit[7:14], view.group[7:14]
    rng = np.random.default_rng(1)
    log_a, d = np.r_[0.0, rng.uniform(-4, 4, 40)], np.r_[0.0, rng.normal(0, 2, 40)]
    bal, worst = pf.family_objectives(view, log_a, d, RATES)
    for i in range(len(log_a)):
        alpha, b = pf.family_rule(log_a[i], d[i])
        for r, rate in enumerate(RATES):
            assert bal[i, r] == pytest.approx(pf.official_objective(view, alpha, b, rate, "balanced_error"), abs=1e-12)
            assert worst[i, r] == pytest.approx(
                pf.official_objective(view, alpha, b, rate, "worst_group_error"), abs=1e-12
            )


def test_hand_worked_case():
    """At rate 0.25 (one of four samples rejected), Chow rejects sample 1 (top 0.6) and accepts sample 2, which
    it predicts as head (0.7 > 0.3), wrongly: head error 0, tail 1/2, balanced 0.25, worst 0.5. With a = 3 and
    d = 0, sample 2 is predicted tail (0.9 > 0.7, right), sample 0 stays head (0.3 < 0.9), and the scores
    max(p_head, 3 p_tail) - m_head - m_tail are -0.1, -0.25, -0.1, 1.4: sample 1 (wrong either way) is the
    one rejected, so every accepted prediction is right: both errors 0, the least possible."""
    view = hand_view()
    bal, worst = pf.family_objectives(view, np.array([0.0, np.log(3.0)]), np.array([0.0, 0.0]), [0.25])
    assert bal[:, 0] == pytest.approx([0.25, 0.0]) and worst[:, 0] == pytest.approx([0.5, 0.0])
    brute = pf.brute_force(view, [0.25], np.linspace(-2, 2, 41), np.linspace(-1.5, 1.5, 31))
    for metric in pf.METRIC.values():
        assert brute.objective[metric] == [0.0]
        got = evaluate_rule(brute.rules[metric][0], view)
        assert got["rejection_rate"] == 0.25 and got["group_error"] == [0.0, 0.0]


@pytest.mark.parametrize("seed", [0, 1])
def test_brute_force_no_worse_than_argse_grid_on_the_fitting_objective(seed):
    """Averaged over the rates (what the study compares), the brute force is no worse than argse's grid search
    on the fitting sample. Not at every rate: the objectives are step functions of the two weights, and a
    240-sample view has cells narrower than the brute force's grid, which argse's zoom can land in."""
    view = synthetic_view(seed=seed)
    opts = FitOptions(tuple(np.round(np.arange(-2, 2.01, 0.1), 2)), search="grid", coarse=0, starts=1)
    brute = pf.brute_force(view, RATES)
    for method, metric in pf.METRIC.items():
        argse = []
        for r, rate in enumerate(RATES):
            rule = fit_rule(method, view, rate, opts)
            argse.append(pf.official_objective(view, rule.alpha, rule.b, rate, metric))
            found = brute.rules[metric][r]
            assert brute.objective[metric][r] == pytest.approx(
                pf.official_objective(view, found.alpha, found.b, rate, metric), abs=1e-12
            )
        assert np.mean(brute.objective[metric]) <= np.mean(argse) + 1e-12, method


def test_todays_refine_reimplemented():
    """Search() with Algorithm 1/2 first is argse's search: grid (the variants are measured against it)."""
    view = synthetic_view(seed=2)
    opts = FitOptions(tuple(np.round(np.arange(-2, 2.01, 0.1), 2)), search="grid", coarse=0, starts=1)
    for method, metric in pf.METRIC.items():
        proto = pf.prototype_fitter(method, opts, pf.Search("today"))
        for rate in (0.1, 0.4):
            ours, theirs = proto(view, rate), fit_rule(method, view, rate, opts)
            assert pf.official_objective(view, ours.alpha, ours.b, rate, metric) == pytest.approx(
                pf.official_objective(view, theirs.alpha, theirs.b, rate, metric), abs=1e-12
            )
