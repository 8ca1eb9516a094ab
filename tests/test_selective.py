import numpy as np
import pytest
import torch

from argse import cli, evaluate
from argse.selective import Rule, aurc, evaluate_rule, fit_rule, group_view, threshold

# Three classes; groups: head = {0, 1}, tail = {2}.
CLASS_GROUP = np.array([0, 0, 1])
PROBS = np.array(
    [
        [0.70, 0.20, 0.10],  # label 0: sure and right
        [0.40, 0.35, 0.25],  # label 1: unsure and wrong (predicts 0)
        [0.30, 0.30, 0.40],  # label 2: unsure, right
        [0.10, 0.15, 0.75],  # label 2: sure and right
    ]
)
LABELS = np.array([0, 1, 2, 2])
VIEW = group_view(PROBS, LABELS, CLASS_GROUP, 2)


def test_group_view_by_hand():
    assert np.allclose(VIEW.top, [[0.7, 0.1], [0.4, 0.25], [0.3, 0.4], [0.15, 0.75]])
    assert np.allclose(VIEW.mass, [[0.9, 0.1], [0.75, 0.25], [0.6, 0.4], [0.25, 0.75]])
    assert VIEW.hit.tolist() == [[True, False], [False, False], [False, True], [False, True]]


def test_chow_by_hand():
    # c = 0.5: accept iff max_y p_y >= 0.5 -> samples 0 and 3, both right.
    accepted, correct = Rule(np.ones(2), np.ones(2), -0.5).apply(VIEW)
    assert accepted.tolist() == [True, False, False, True] and correct.tolist() == [True, False, True, True]
    m = evaluate_rule(Rule(np.ones(2), np.ones(2), -0.65), VIEW)  # accept iff max p >= 0.35: samples 0, 1, 2, 3
    assert m["rejection_rate"] == 0 and m["error"] == 0.25
    assert m["group_error"] == [0.5, 0.0] and m["balanced_error"] == 0.25 and m["worst_group_error"] == 0.5


def test_plugin_rule_by_hand():
    # beta = (1/2, 1/2), pi = (1, 0.25): alpha = (0.5, 2); mu = (0, 1.5): b = (0.5, 0.5); c = 0.
    # Sample 2: max(0.5*0.3, 2*0.4) = 0.8 (predicts class 2) vs sum b p = 0.5 -> accept.
    # Sample 1: max(0.5*0.4, 2*0.25) = 0.5 (predicts class 2, wrong) vs 0.5 -> accept (ties accept).
    # Sample 0: max(0.35, 0.2) = 0.35 < 0.5 -> reject.
    accepted, correct = Rule(np.array([0.5, 2.0]), np.array([0.5, 0.5]), 0.0).apply(VIEW)
    assert accepted.tolist() == [False, True, True, True]
    assert correct.tolist() == [True, False, True, True]


@pytest.mark.parametrize("c", [0.0, 0.1, 0.2, 0.3, 0.45])
def test_plugin_with_unit_coverage_and_zero_mu_is_chow(c):
    # alpha = beta/pi = (1/2, 1/2), b = alpha - mu = (1/2, 1/2):
    # accept iff max_y p_y / 2 >= sum_y p_y / 2 - c  <=>  max_y p_y >= 1 - 2c: Chow with cost 2c,
    # and argmax_y p_y / 2 = argmax_y p_y.
    half = np.full(2, 0.5)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=200)
    view = group_view(probs, rng.integers(0, 3, 200), CLASS_GROUP, 2)
    plug, chow = Rule(half, half, -c).apply(view), Rule(np.ones(2), np.ones(2), -2 * c).apply(view)
    assert np.array_equal(plug[0], chow[0]) and np.array_equal(plug[1], chow[1])


def test_threshold_hits_the_target_rate_and_sweep_is_monotone():
    s = np.random.default_rng(1).normal(size=1000)
    for rate in (0.0, 0.25, 0.8):
        assert (s < threshold(s, rate)).mean() == pytest.approx(rate)
    view = _underconfident_tail(2000, seed=3)
    kw = dict(
        mu_grid=[round(-2 + 0.1 * i, 1) for i in range(41)], power_iters=10, worst_rounds=5, worst_step=1.0, seed=0
    )
    for method in ("chow", "plugin_balanced", "plugin_worst"):
        rates = [
            evaluate_rule(fit_rule(method, view, r, **kw), view)["rejection_rate"] for r in np.arange(0, 0.85, 0.05)
        ]
        assert all(b >= a for a, b in zip(rates, rates[1:], strict=False)) and abs(rates[-1] - 0.8) < 0.01


def test_aurc_by_hand():
    assert aurc([0, 0.4, 0.8], [0.3, 0.3, 0.3], 0, 0.8) == pytest.approx(0.3)
    assert aurc([0, 0.5, 1.0], [0.0, 0.5, 1.0]) == pytest.approx(0.5)
    assert aurc([0, 0.5], [0.2, 0.4], 0, 1) == pytest.approx((0.5 * 0.3 + 0.5 * 0.4) / 1)  # held at 0.4 past 0.5


def _underconfident_tail(n: int, seed: int, classes: int = 10, tail_from: int = 7):
    """A CE model on long-tailed data: posteriors of the training prior (imbalance 100), so on
    balanced test data the tail classes are systematically under-confident and under-predicted."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += rng.uniform(0, 5, n)
    logits += np.log(100.0 ** (-np.arange(classes) / (classes - 1)))  # log prior
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    class_group = (np.arange(classes) >= tail_from).astype(int)
    return group_view(probs, labels, class_group, 2)


def test_plugins_beat_chow_on_an_underconfident_tail():
    tune, test = _underconfident_tail(4000, 0), _underconfident_tail(4000, 1)
    kw = dict(
        mu_grid=[round(-2 + 0.1 * i, 1) for i in range(41)], power_iters=10, worst_rounds=10, worst_step=1.0, seed=0
    )
    grid = [round(0.05 * i, 2) for i in range(17)]
    curves = {
        m: [evaluate_rule(fit_rule(m, tune, r, **kw), test) for r in grid]
        for m in ("chow", "plugin_balanced", "plugin_worst")
    }
    area = {
        (m, k): aurc(grid, [row[k] for row in curves[m]], 0, 0.8)
        for m in curves
        for k in ("balanced_error", "worst_group_error")
    }
    assert area[("plugin_balanced", "balanced_error")] < area[("chow", "balanced_error")] - 0.01
    assert area[("plugin_worst", "worst_group_error")] < area[("plugin_balanced", "worst_group_error")]


def test_evaluate_end_to_end_and_bad_input(tmp_path, capsys):
    from tests.logit_factory import write_run

    def model(labels, g):
        return torch.randn(len(labels), 4, generator=g) + 2 * torch.nn.functional.one_hot(labels, 4)

    write_run(tmp_path / "o" / "e", {"ce": model}, 4, [100, 50, 10, 5])
    base = ["--set", f"output_dir={tmp_path / 'o'}", "--set", "name=e", "--set", "data.tail_max_count=10"]
    assert evaluate.main(base + ["--methods", "chow,plugin_balanced"]) == 0
    out = tmp_path / "o" / "e" / "evaluation"
    assert {p.name for p in out.iterdir()} >= {"report.json", "rc_curves.csv", "rc_curves.png", "summary.md"}
    for argv, msg in [
        (["--methods", "magic"], "unknown method 'magic'"),
        (["--sources", "ce,gating"], "no tune logits for 'gating'"),
        (["--set", "evaluate.rejection_grid=[0.0, 1.0]"], "rejection_grid values must lie in [0, 1)"),
    ]:
        capsys.readouterr()
        assert cli.run(evaluate.main, base + argv) == 2
        assert msg in capsys.readouterr().err
