"""One source per number: where a built-in expert's recipe dataclass states a published recipe as its
defaults, experts/<name>.yaml (which carries the citation) states the same numbers, so neither can
drift from the other unseen."""

from __future__ import annotations

import dataclasses

import pytest

from argse.config import RunConfig
from argse.experts import get_expert, load_recipe
from tests.tiny_run import REPO

# ce: TrainRecipe's defaults are Cao et al. 2019's schedule; decoupling: _stage1() / _stage2() are
# Kang et al. 2020's; posthoc_adjust: ce as the source and the tau grid.
STATED_TWICE = ["ce", "decoupling", "posthoc_adjust"]


@pytest.mark.parametrize("name", STATED_TWICE)
def test_the_recipe_yaml_and_the_dataclass_defaults_agree(name):
    cls = get_expert(name)
    from_yaml = load_recipe(cls, RunConfig(recipes_dir=str(REPO / "experts")))
    assert dataclasses.asdict(from_yaml) == dataclasses.asdict(cls.Recipe())


def test_the_agreement_test_can_fail(tmp_path):
    """A YAML that changes one number no longer agrees with the defaults."""
    (tmp_path / "ce.yaml").write_text((REPO / "experts" / "ce.yaml").read_text().replace("gamma: 0.01", "gamma: 0.02"))
    changed = load_recipe(get_expert("ce"), RunConfig(recipes_dir=str(tmp_path)))
    assert dataclasses.asdict(changed) != dataclasses.asdict(get_expert("ce").Recipe())
