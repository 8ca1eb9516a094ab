"""One source per number: where a built-in expert's recipe dataclass states a published recipe as its
defaults, experts/<name>.yaml (which carries the citation) states the same numbers, so neither can
drift from the other unseen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from argse.config.loading import load_run_config
from argse.config.sections import RunConfig
from argse.core.errors import ArgseError
from argse.experts import get_expert, load_recipe
from argse.training.schedule import lr_factor
from tests.tiny_run import REPO

# ce: TrainRecipe's defaults are Cao et al. 2019's schedule; decoupling: _stage1() / _stage2() are
# Kang et al. 2020's; posthoc_adjust: ce as the source and the tau grid.
STATED_TWICE = ["ce", "decoupling", "posthoc_adjust"]


@pytest.mark.parametrize("name", STATED_TWICE)
def test_the_recipe_yaml_and_the_dataclass_defaults_agree(name):
    cls = get_expert(name)
    from_yaml = load_recipe(cls, RunConfig(recipes_dir=str(REPO / "experts")))
    assert from_yaml.model_dump() == cls.Recipe().model_dump()


def test_the_agreement_test_can_fail(tmp_path):
    """A YAML that changes one number no longer agrees with the defaults."""
    (tmp_path / "ce.yaml").write_text((REPO / "experts" / "ce.yaml").read_text().replace("gamma: 0.01", "gamma: 0.02"))
    changed = load_recipe(get_expert("ce"), RunConfig(recipes_dir=str(tmp_path)))
    assert changed.model_dump() != get_expert("ce").Recipe().model_dump()


# ---------------------------------------------------------------- a shortened schedule keeps its shape


def _recipe(name, *sets):
    return load_recipe(get_expert(name), load_run_config(None, list(sets)))


def test_shortening_scales_warmup_and_milestones():
    """ce's 5 warm-up epochs and milestones [160, 180] of 200 become 1 and [8, 9] of 10: the lr peaks, then decays."""
    r = _recipe("ce", "recipes.ce.epochs=10")
    assert (r.epochs, r.warmup_epochs, r.milestones) == (10, 1, [8, 9])
    steps = 4
    factors = [lr_factor(s, steps, r) for s in range(10 * steps)]
    assert max(factors) == 1.0 and factors[-1] == pytest.approx(r.gamma**2)
    two = _recipe("ce", "recipes.ce.epochs=2")  # the case: the lr reaches its peak within the first epoch
    assert (two.warmup_epochs, two.milestones) == (1, [2, 2])
    assert lr_factor(steps - 1, steps, two) == 1.0


def test_a_scaled_schedule_is_said_in_one_line_once_per_command(tmp_path):
    argv = [
        "-m",
        "argse.train_experts",
        "--print-config",
        "--set",
        "recipes.ce.epochs=10",
        "--set",
        "recipes.decoupling.stage2.epochs=19",
    ]
    out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=tmp_path, check=True)
    lines = [line for line in out.stderr.splitlines() if line.startswith("recipe of")]
    assert lines == [
        "recipe of ce: warmup_epochs 5 -> 1, milestones [160, 180] -> [8, 9] (scaled with epochs 200 -> 10)",
        "recipe of decoupling: stage2.milestones [40, 60] -> [10, 15] (scaled with epochs 76 -> 19)",
    ]
    quiet = subprocess.run(
        [sys.executable, "-m", "argse.train_experts", "--print-config"], capture_output=True, text=True, cwd=tmp_path
    )
    assert "recipe of" not in quiet.stderr


def test_values_set_beside_epochs_are_kept_and_lengthening_scales_too():
    kept = _recipe("ce", "recipes.ce.epochs=30", "recipes.ce.milestones=[20, 26]")
    assert (kept.warmup_epochs, kept.milestones) == (1, [20, 26])  # warm-up scaled (5 * 30/200 -> 1), milestones kept
    long = _recipe("logit_adjust", "recipes.logit_adjust.epochs=400")
    assert (long.warmup_epochs, long.milestones) == (6, [194, 298, 364])  # experts/logit_adjust.yaml's doubled
    stage = _recipe("decoupling", "recipes.decoupling.stage2.epochs=19")
    assert (stage.stage2.warmup_epochs, stage.stage2.milestones) == (0, [10, 15])  # 76 -> 19: [40, 60] / 4
    assert stage.stage1.milestones == [80, 140, 160]  # the other stage is untouched


def test_the_shipped_short_configs_keep_what_they_write():
    """Configs that write their whole short schedule (every key beside epochs) are read as written."""
    cfg = load_run_config(REPO / "configs" / "cifar10_lt_cpu.yaml")
    ce = load_recipe(get_expert("ce"), cfg)
    assert (ce.epochs, ce.warmup_epochs, ce.milestones) == (30, 2, [20, 26])


def test_set_epochs_over_a_config_that_writes_the_schedule_scales_it():
    """configs/demo.yaml writes ce's 15 epochs, warm-up 1 and milestones [10, 13]: --set epochs=4 keeps that shape
    (the milestones would otherwise lie past the last epoch and be refused)."""
    cfg = load_run_config(REPO / "configs" / "demo.yaml", ["recipes.ce.epochs=4"])
    ce, la = (load_recipe(get_expert(n), cfg) for n in ("ce", "logit_adjust"))
    assert (ce.epochs, ce.warmup_epochs, ce.milestones) == (4, 1, [3, 3])
    assert (la.epochs, la.milestones) == (15, [10, 13])  # the YAML anchor's other user is not changed


@pytest.mark.parametrize("value", ["3", "[1, 2]"])
def test_a_recipe_that_is_no_mapping_is_one_sentence(value):
    with pytest.raises(ArgseError, match=r"config key 'recipes.ce' must be a mapping of recipe keys"):
        _recipe("ce", f"recipes.ce={value}")


def test_a_missing_built_in_recipe_is_an_error_never_the_defaults(tmp_path, monkeypatch):
    from argse.config import recipe_layers

    monkeypatch.setattr(recipe_layers, "BUILTIN_RECIPES", tmp_path)  # an install that lost experts/*.yaml
    with pytest.raises(ArgseError, match=r"^the built-in recipe .*ce\.yaml is missing; reinstall argse"):
        _recipe("ce")
