"""Per-expert random streams: distinct experts differ, the same config repeats itself exactly."""

from __future__ import annotations

import pytest
import torch

from argse.config.loading import load_run_config
from argse.core import seeds
from argse.data.long_tail import prepare_data
from argse.experts import ExpertContext, load_recipe
from argse.experts.ce import CrossEntropyExpert
from tests.conftest import tiny_overrides


def test_expert_seed_depends_on_the_run_seed_and_the_name_only():
    assert seeds.expert_seed(0, "ce") == seeds.expert_seed(0, "ce")
    assert len({seeds.expert_seed(s, n) for s in (0, 1) for n in ("ce", "logit_adjust", "balanced_softmax")}) == 6
    assert 0 <= seeds.expert_seed(7, "decoupling") < 2**31


def test_unknown_stream_names_the_table():
    with pytest.raises(KeyError, match="add it to argse.core.seeds.STREAMS"):
        seeds.seed(0, "dropuot")


def _trained_weights(tmp_path, name: str, **sets: str) -> dict[str, torch.Tensor]:
    """Train a plain-CE expert called ``name`` on the tiny run; its final weights."""
    cfg = load_run_config(None, tiny_overrides(tmp_path, **sets))
    ctx = ExpertContext(cfg, prepare_data(cfg), torch.device("cpu"), folders={name: tmp_path / "training" / name})
    cls = type(f"Twin_{name}", (CrossEntropyExpert,), {"name": name})
    expert = cls(ctx, load_recipe(CrossEntropyExpert, cfg))
    expert.train()
    return {k: v.clone() for k, v in expert.model.state_dict().items()}


def test_two_experts_with_the_same_loss_but_different_names_differ(tmp_path):
    a = _trained_weights(tmp_path / "a", "twin_a")
    b = _trained_weights(tmp_path / "b", "twin_b")
    assert not torch.equal(a["fc.weight"], b["fc.weight"])


def test_the_same_config_twice_gives_the_same_weights(tmp_path):
    first = _trained_weights(tmp_path / "1", "twin_a")
    second = _trained_weights(tmp_path / "2", "twin_a")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_recipe_seed_overrides_the_derived_one(tmp_path):
    sets = {"recipes.ce.seed": "5"}
    a = _trained_weights(tmp_path / "a", "twin_a", **sets)
    b = _trained_weights(tmp_path / "b", "twin_b", **sets)
    assert all(torch.equal(a[k], b[k]) for k in a)
