"""The figures of a risk-coverage curve (argse.selective.curve_metrics): worked by hand, against the AURCs of
the sweep, against direct definitions, and their class-stratified bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from argse.selective.curve_metrics import Targets, class_resamples, interval, summarise
from argse.selective.rejectors import FitOptions, fit_rule
from argse.selective.sweep import curve_aurcs, decisions, sweep
from tests.test_selective import MU_GRID, _underconfident_tail

# Two points of a curve on four samples, groups [0, 0, 1, 1], equal weights: at rate 0 everything is accepted and
# samples 0 and 2 are right; at rate 0.5 samples 0 (right) and 3 (wrong) are accepted.
HAND = {
    "accepted": np.array([[1, 1, 1, 1], [1, 0, 0, 1]], bool),
    "correct": np.array([[1, 0, 1, 0], [1, 0, 1, 0]], bool),
    "group": np.array([0, 0, 1, 1]),
    "labels": np.array([0, 1, 2, 3]),
}


def _hand(targets: Targets, weight=None):
    w = np.ones(4) if weight is None else weight
    got = summarise({"c": (HAND["accepted"], HAND["correct"])}, HAND["group"], 2, w, HAND["labels"], [0.0, 0.5],
                    targets)  # fmt: skip
    return got["c"].figures


def test_figures_by_hand():
    """Group errors: (0.5, 0.5) at rate 0, (0, 1) at rate 0.5; generalized risks (0.5, 0.5) and (0, 0.5); the
    oracle rejects each group's error first, so its errors are (0.5, 0.5) and (0, 0). Held past 0.5 to 0.8."""
    f = _hand(Targets(coverage=0.8, risk=0.1))
    bal, worst = f["balanced_error"], f["worst_group_error"]
    assert bal["aurc"] == pytest.approx(0.5)
    assert worst["aurc"] == pytest.approx((0.5 * 0.75 + 0.3 * 1.0) / 0.8)
    assert bal["augrc"] == pytest.approx((0.5 * 0.375 + 0.3 * 0.25) / 0.8)
    assert worst["augrc"] == pytest.approx(0.5)
    assert bal["e_aurc"] == pytest.approx((0.5 * 0.25 + 0.3 * 0.5) / 0.8)
    assert worst["e_aurc"] == pytest.approx((0.5 * 0.5 + 0.3 * 1.0) / 0.8)
    assert bal["risk@coverage=0.8"] == pytest.approx(0.5)
    assert worst["risk@coverage=0.8"] == pytest.approx(0.7)  # rate 0.2: 0.4 of the way from 0.5 to 1.0
    assert bal["coverage@risk=0.1"] == 0.0  # no point reaches it
    assert bal["risk@coverage=1"] == pytest.approx(0.5) and worst["risk@coverage=1"] == pytest.approx(0.5)
    assert _hand(Targets(risk=0.5))["balanced_error"]["coverage@risk=0.5"] == pytest.approx(1.0)
    assert _hand(Targets(risk=0.5))["worst_group_error"]["coverage@risk=0.5"] == pytest.approx(1.0)


def test_weights_enter_every_sum():
    """Weight 3 on sample 1 (group 0, wrong, rejected at rate 0.5): group 0's error at rate 0 becomes 3/4."""
    f = _hand(Targets(), weight=np.array([1.0, 3.0, 1.0, 1.0]))
    assert f["balanced_error"]["risk@coverage=1"] == pytest.approx((0.75 + 0.5) / 2)
    assert f["worst_group_error"]["risk@coverage=1"] == pytest.approx(0.75)


def _swept(weighted: bool, n: int = 3000):
    tune, test = _underconfident_tail(n, 0), _underconfident_tail(n, 1)
    if weighted:
        test.weight = np.where(test.group == 1, 0.1, 1.0)
    grid = [round(0.05 * i, 2) for i in range(17)] + [0.85, 0.9, 0.95]
    opts = FitOptions(MU_GRID, power_iters=5, worst_rounds=3, search="power")
    curves = {m: sweep(tune, test, lambda v, r, m=m: fit_rule(m, v, r, opts), grid) for m in ("chow", "plugin_worst")}
    return test, grid, curves


@pytest.mark.parametrize("weighted", [False, True])
def test_aurc_equals_the_sweep_s_and_e_aurc_is_never_negative(weighted):
    test, grid, curves = _swept(weighted)
    labels = np.arange(len(test.group)) % 10  # any strata
    got = summarise({m: decisions(rows, test) for m, rows in curves.items()}, test.group, 2, test.weight, labels,
                    grid, Targets())  # fmt: skip
    for m, rows in curves.items():
        for metric in ("balanced_error", "worst_group_error"):
            assert got[m].figures[metric]["aurc"] == pytest.approx(curve_aurcs(rows)[f"{metric}@0-0.8"], abs=1e-12)
            assert got[m].figures[metric]["aurc@0-1"] == pytest.approx(curve_aurcs(rows)[f"{metric}@0-1"], abs=1e-12)
            assert got[m].figures[metric]["e_aurc"] >= 0
            assert 0 < got[m].figures[metric]["augrc"] < got[m].figures[metric]["aurc"]


def test_one_group_matches_the_definitions_of_geifman_and_traub():
    """One group, equal weights, a rule per sample count: AURC, E-AURC and AUGRC equal their textbook forms on
    the sorted confidences (mean selective risk over coverages k/N, k = 1..N, less the oracle's; mean joint risk)."""
    rng = np.random.default_rng(3)
    n = 200
    conf = rng.random(n)
    correct = rng.random(n) < conf  # more confident, more often right
    order = np.argsort(-conf)
    accepted = np.zeros((n, n), bool)  # point j accepts the n - j most confident
    for j in range(n):
        accepted[j, order[: n - j]] = True
    rates = [j / n for j in range(n)]
    got = summarise({"c": (accepted, np.broadcast_to(correct, (n, n)))}, np.zeros(n, int), 1, np.ones(n),
                    np.zeros(n, int), rates, Targets())["c"].figures["balanced_error"]  # fmt: skip
    wrong = ~correct[order]
    kept = np.arange(n, 0, -1)  # accepted counts per point
    risk = np.array([wrong[:k].mean() for k in kept])
    oracle = np.array([max(0, wrong.sum() - (n - k)) / k for k in kept])
    joint = np.array([wrong[:k].sum() / n for k in kept])

    def area(y):  # the trapezoid over the rates in [0, 0.8], as the curve integrates
        x = np.array(rates)
        inside = x <= 0.8
        return np.trapezoid(np.append(y[inside], np.interp(0.8, x, y)), np.append(x[inside], 0.8)) / 0.8

    assert got["aurc"] == pytest.approx(area(risk))
    assert got["e_aurc"] == pytest.approx(area(risk) - area(oracle))
    assert got["augrc"] == pytest.approx(area(joint))


def test_resamples_keep_class_counts_and_are_seeded():
    labels = np.repeat([0, 1, 2], [50, 20, 5])
    chunks = list(class_resamples(labels, 600, seed=7, chunk=250))
    counts = np.concatenate(chunks)
    assert counts.shape == (600, 75) and [len(c) for c in chunks] == [250, 250, 100]
    for c, n in [(0, 50), (1, 20), (2, 5)]:
        assert (counts[:, labels == c].sum(1) == n).all()
    assert np.array_equal(counts, np.concatenate(list(class_resamples(labels, 600, seed=7))))
    assert not np.array_equal(counts, np.concatenate(list(class_resamples(labels, 600, seed=8))))
    assert counts.std(0).min() > 0  # every sample is drawn a varying number of times


def test_bootstrap_intervals_cover_the_figure_and_pair_up():
    test, grid, curves = _swept(False, n=2000)
    labels = np.arange(len(test.group)) % 10
    got = summarise({m: decisions(rows, test) for m, rows in curves.items()}, test.group, 2, test.weight, labels,
                    grid, Targets(), resamples=400, seed=0)  # fmt: skip
    for m in curves:
        for metric, figs in got[m].figures.items():
            for name, value in figs.items():
                draws = got[m].draws[metric][name]
                assert draws.shape == (400,)
                lo, hi = interval(draws, 0.95)
                assert lo <= value + 1e-6 and value - 1e-6 <= hi, (m, metric, name, lo, value, hi)
        band = got[m].bands["balanced_error"]
        assert band.shape == (len(grid), 2) and (band[:, 0] <= band[:, 1]).all()
    # The same resamples for every curve: paired differences are tighter than the two intervals side by side.
    a, b = (got[m].draws["worst_group_error"]["aurc"] for m in ("chow", "plugin_worst"))
    diff = interval(a - b, 0.95)
    assert diff[1] - diff[0] < (interval(a, 0.95)[1] - interval(a, 0.95)[0]) + (
        interval(b, 0.95)[1] - interval(b, 0.95)[0]
    )
    assert diff[0] > 0  # plugin_worst beats Chow on the worst group here, beyond the noise
