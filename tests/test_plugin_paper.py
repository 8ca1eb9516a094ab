"""Algorithm 1 in the paper's fixed-cost form (protocol: paper), against values worked by hand."""

from __future__ import annotations

import numpy as np

from argse.selective.rejectors import FitOptions, fit_rule, plugin_at_cost
from argse.selective.views import GroupView

# Four samples, two groups (head = 0, tail = 1), equal weights. Per sample: each group's top probability
# and mass, whether that top class is the label, and the label's group.
VIEW = GroupView(
    top=np.array([[0.9, 0.1], [0.5, 0.3], [0.2, 0.7], [0.3, 0.35]]),
    mass=np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]]),
    hit=np.array([[True, False], [False, True], [False, True], [True, False]]),
    group=np.array([0, 0, 1, 1]),
    k=2,
    weight=np.ones(4),
)
OPTS = FitOptions(mu_grid=(0.0,), power_iters=1, fixed_cost=True)


def test_one_rule_at_a_cost_by_hand():
    # Group priors (0.5, 0.5) and beta = 1/2 each: alpha = b = 1, so s = max(top) - 1 (the masses sum to 1):
    # s = -0.1, -0.5, -0.3, -0.65. At c = 0.4 (accept iff s >= -0.4) samples 0 and 2 are accepted.
    rule, rejected = plugin_at_cost(VIEW, np.array([0.5, 0.5]), 0.4, OPTS)
    np.testing.assert_allclose(rule.alpha, [1.0, 1.0])
    np.testing.assert_allclose(rule.b, [1.0, 1.0])
    assert rule.t == -0.4 and rejected == 0.5


def test_a_second_iterate_uses_the_first_ones_acceptance():
    # Iterate 1 accepts samples 0 and 2 (c = 0.4): joint acceptances (0.25, 0.25), so alpha = b = 2 and
    # s = 2 (max(top) - 1): -0.2, -1.0, -0.6, -1.3; at c = 0.4 only sample 0 stays.
    opts = FitOptions(mu_grid=(0.0,), power_iters=2, fixed_cost=True)
    rule, rejected = plugin_at_cost(VIEW, np.array([0.5, 0.5]), 0.4, opts)
    np.testing.assert_allclose(rule.alpha, [2.0, 2.0])
    assert rejected == 0.75


def test_the_cost_is_found_for_the_rate_and_t_set_to_its_quantile():
    # Rate 0.5: the bisection finds a cost whose rule rejects at most half; t is then the rate's quantile
    # of s = (-0.1, -0.5, -0.3, -0.65): the 2nd smallest, -0.3.
    rule = fit_rule("plugin_balanced", VIEW, 0.5, OPTS)
    assert abs(rule.t - (-0.3)) < 1e-12


def test_results_pages_say_which_checkpoint_each_expert_kept(tmp_path):
    """The page line reads each expert's recipe from its exported logits; older files (no setting) are starred."""
    import torch

    from argse.config.loading import load_run_config
    from argse.data.logits import split_file, write_logits
    from argse.reports.pages import kept_checkpoints

    cfg = load_run_config(None, [f"output_dir={tmp_path}", "experts=[ce,decoupling,posthoc_adjust,logit_adjust]"])
    recipes = {
        "ce": {"epochs": 2, "checkpoint": "last"},
        "decoupling": {"stage1": {"epochs": 2, "checkpoint": "best_val"}, "stage2": {"epochs": 1}},
        "posthoc_adjust": {"source": "ce", "tau_grid": [1.0]},
    }
    sources = {expert: tmp_path / "stages" / expert for expert in recipes}  # logit_adjust has none
    for expert, recipe in recipes.items():
        write_logits(
            split_file(sources[expert], "test"), torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]),
            expert=expert, dataset="d", split="test", temperature=1.0, class_counts=[5, 3, 1], splits_sha256="s",
            config=recipe,
        )  # fmt: skip
    line = kept_checkpoints(cfg, sources)
    assert "ce: `last`;" in line and "decoupling: stage1 `best_val`, stage2 `best_val`*" in line
    assert "posthoc_adjust: derived" in line and "logit_adjust" not in line and "* trained before" in line
