import importlib.metadata
import inspect
import sys

import pytest
import torch

import argse.experts
from argse import train_experts
from argse.config import load_run_config
from argse.data import prepare_data
from argse.errors import ArgseError
from argse.experts import (
    Expert,
    ExpertContext,
    StandardExpert,
    get_expert,
    list_experts,
    load_plugins,
    load_recipe,
    registry,
)
from argse.logits import logits_path, read_logit_set
from tests.conftest import REPO


def test_builtin_experts_are_registered():
    assert {"ce", "logit_adjust", "balanced_softmax", "decoupling"} <= set(list_experts())
    assert list_experts() == sorted(list_experts())


def test_every_expert_class_in_the_package_is_registered():
    for module in (
        argse.experts.ce,
        argse.experts.logit_adjust,
        argse.experts.balanced_softmax,
        argse.experts.decoupling,
    ):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, StandardExpert) and cls.__module__ == module.__name__:
                assert get_expert(cls.name) is cls


def test_unknown_expert_lists_available():
    with pytest.raises(ArgseError, match=r"unknown expert 'cee'; available experts: balanced_softmax, ce, decoupling"):
        get_expert("cee")


def test_duplicate_name_names_both_places():
    with pytest.raises(
        ValueError,
        match=r"expert 'ce' is registered twice: by argse.experts.ce.CrossEntropyExpert .* and by .*Impostor",
    ):

        @registry.register_expert("ce")
        class Impostor(StandardExpert):
            pass


def test_every_expert_yaml_recipe_validates():
    cfg = load_run_config(None, [f"recipes_dir={REPO / 'experts'}"])
    for name in ("ce", "logit_adjust", "balanced_softmax", "decoupling"):
        load_recipe(get_expert(name), cfg)


def test_recipe_typo_names_the_dotted_path(tiny):
    cfg = load_run_config(None, tiny + ["recipes.decoupling.stage2.epochz=3"])
    with pytest.raises(ArgseError, match=r"unknown config key 'recipes\.decoupling\.stage2\.epochz' \(did you mean"):
        load_recipe(get_expert("decoupling"), cfg)


@pytest.mark.parametrize("name", ["ce", "logit_adjust", "balanced_softmax", "decoupling"])
def test_expert_contract_train_calibrate_export(name, tiny_cfg):
    cls = get_expert(name)
    ctx = ExpertContext(tiny_cfg, prepare_data(tiny_cfg), torch.device("cpu"))
    expert = cls(ctx, load_recipe(cls, tiny_cfg))
    assert isinstance(expert, Expert)
    expert.train()
    temperature = expert.calibrate()
    assert temperature > 0
    paths = expert.export_logits()
    assert set(paths) == {"val", "tune", "test"}
    for split, path in paths.items():
        (f,) = read_logit_set([path])
        assert f.expert == name and f.split == split and f.temperature == temperature
        assert f.splits_sha256 == ctx.data.sha256 and torch.equal(f.labels, ctx.data.held_out[split].labels)
    assert (tiny_cfg.out_dir / "logits" / name / "config.yaml").is_file()


def test_plugin_from_config_list(tiny):
    argv = _args(
        tiny,
        "label_smoothing",
        plugins="[tests.plugins.tiny_expert]",
        **{"recipes.label_smoothing.epochs": 1, "recipes.label_smoothing.batch_size": 16},
    )
    assert train_experts.main(argv) == 0


def _args(tiny, experts, **sets):
    argv = ["--experts", experts]
    for item in tiny + [f"{k}={v}" for k, v in sets.items()]:
        argv += ["--set", item]
    return argv


def test_plugin_from_entry_point(tiny, monkeypatch):
    sys.modules.pop("tests.plugins.tiny_expert", None)
    registry._EXPERTS.pop("label_smoothing", None)
    ep = importlib.metadata.EntryPoint("label_smoothing", "tests.plugins.tiny_expert", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    load_plugins([])
    assert "label_smoothing" in list_experts()


def test_missing_plugin_module_is_a_clear_error():
    with pytest.raises(ArgseError, match=r"plugin module 'nope.nothing' could not be imported .*fix 'plugins'"):
        load_plugins(["nope.nothing"])


def test_train_experts_end_to_end_writes_every_split(tiny_cfg, tiny):
    assert train_experts.main(_args(tiny, "ce,balanced_softmax")) == 0
    for split in ("val", "tune", "test"):
        files = read_logit_set([logits_path(tiny_cfg.out_dir, e, split) for e in ("ce", "balanced_softmax")])
        assert len(files) == 2
    assert (tiny_cfg.ckpt_dir / "ce" / "config.yaml").is_file()
