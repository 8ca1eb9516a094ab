"""posthoc_adjust: an expert computed from ce's exported logits (Menon et al.'s post-hoc correction)."""

from __future__ import annotations

import pytest
import torch

from argse import train_experts
from argse.config.loading import load_run_config
from argse.core.errors import ArgseError
from argse.data.logits import load_sources
from argse.data.metrics import balanced_accuracy
from argse.experts import get_expert, load_recipe
from argse.experts.losses import log_prior
from argse.stages import experts as stage_experts
from argse.stages.run import RunStages
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    sets = tiny_overrides(tmp_path_factory.mktemp("posthoc"))
    argv = [x for s in sets for x in ("--set", s)]
    assert train_experts.main([*argv, "--experts", "ce,posthoc_adjust"]) == 0
    cfg = load_run_config(None, sets)
    stages = RunStages(cfg)
    folders = {n: stages.expert(n).folder for n in ("ce", "posthoc_adjust")}
    return cfg, load_sources(folders, ["val", "tune", "test"], stages.splits().file("splits.json"))


def test_logits_are_ce_calibrated_minus_tau_log_prior(run):
    cfg, files = run
    ce, post = files["test"]
    tau = post.config["fitted"]["tau"]
    expected = ce.logits / ce.temperature - tau * log_prior(torch.tensor(ce.class_counts))
    torch.testing.assert_close(post.logits, expected, rtol=0, atol=1e-6)
    assert torch.equal(post.labels, ce.labels) and torch.equal(post.indices, ce.indices)
    assert post.config["source"] == "ce"


def test_tau_is_the_best_balanced_accuracy_on_val(run):
    cfg, files = run
    ce, post = files["val"]
    grid = load_recipe(get_expert("posthoc_adjust"), cfg).tau_grid
    log_pi = log_prior(torch.tensor(ce.class_counts))
    scores = {tau: balanced_accuracy(ce.calibrated - tau * log_pi, ce.labels) for tau in grid}
    tau = post.config["fitted"]["tau"]
    assert scores[tau] == max(scores.values())
    assert post.config["fitted"]["val_balanced_acc"] == pytest.approx(scores[tau])


def test_it_needs_its_source_first(tmp_path):
    argv = [x for s in tiny_overrides(tmp_path) for x in ("--set", s)]
    assert get_expert("posthoc_adjust").requires(
        load_recipe(get_expert("posthoc_adjust"), load_run_config(None, tiny_overrides(tmp_path)))
    ) == ["ce"]
    with pytest.raises(ArgseError, match=r"has no expert 'ce' yet.*python -m argse\.train_experts --experts ce$"):
        train_experts.main([*argv, "--experts", "posthoc_adjust"])


def test_presets_merge_over_the_recipe_and_unknown_ones_are_listed(tmp_path):
    cls = get_expert("logit_adjust")
    cfg = load_run_config(None, tiny_overrides(tmp_path, **{"recipes.logit_adjust": "{preset: menon2021_cifar10}"}))
    recipe = load_recipe(cls, cfg)
    assert (recipe.epochs, recipe.milestones, recipe.nesterov) == (1241, [604, 926, 1128], True)
    bad = load_run_config(None, tiny_overrides(tmp_path, **{"recipes.logit_adjust": "{preset: menon}"}))
    with pytest.raises(ArgseError, match=r"no preset 'menon'.*available: menon2021_cifar10, menon2021_cifar100"):
        load_recipe(cls, bad)


def test_kang_preset_is_their_stage_2(tmp_path):
    cfg = load_run_config(None, tiny_overrides(tmp_path, **{"recipes.decoupling": "{preset: kang2020}"}))
    recipe = load_recipe(get_expert("decoupling"), cfg)
    assert (recipe.bn, recipe.feature_cache, recipe.stage2.augment, recipe.stage2.sampler) == (
        "rebalanced",
        False,
        True,
        "balanced",
    )


def test_experts_run_after_what_they_require_whatever_the_order_given(tmp_path):
    cfg = load_run_config(None, tiny_overrides(tmp_path))
    plan = stage_experts.plan_experts(cfg, ["posthoc_adjust", "logit_adjust", "ce"])
    assert [cls.name for cls, _ in plan] == ["logit_adjust", "ce", "posthoc_adjust"]


def test_a_source_that_is_no_expert_is_refused_before_training(tmp_path):
    cfg = load_run_config(None, tiny_overrides(tmp_path, **{"recipes.posthoc_adjust.source": "nope"}))
    with pytest.raises(ArgseError, match=r"'posthoc_adjust' requires 'nope', which is not a registered expert"):
        stage_experts.plan_experts(cfg, ["ce", "posthoc_adjust"])


def test_adjust_stays_on_the_device_of_its_logits():
    expert = get_expert("posthoc_adjust")(None, get_expert("posthoc_adjust").Recipe(), {"tau": 1.0})
    assert expert.adjust(torch.zeros(2, 3, device="meta"), [50, 5, 1]).device.type == "meta"


def test_a_derived_expert_records_the_export_it_was_made_from(run):
    cfg, _ = run
    stages = RunStages(cfg)
    made_from = stages.expert("posthoc_adjust").record.inputs["from"]
    assert made_from == {"ce": stages.expert("ce").content}


@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_a_recipe_seed_out_of_range_is_one_sentence(tmp_path, seed):
    cfg = load_run_config(None, tiny_overrides(tmp_path, **{"recipes.ce.seed": seed}))
    with pytest.raises(ArgseError, match=r"^config key 'recipes\.ce\.seed' must be (>= 0|<= \d+), got "):
        load_recipe(get_expert("ce"), cfg)
