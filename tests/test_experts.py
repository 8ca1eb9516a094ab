import importlib
import importlib.metadata
import inspect
import pkgutil
import sys

import pytest
import torch
import torch.nn.functional as F

import argse.core.registry
import argse.experts
from argse import train_experts
from argse.config.loading import load_run_config
from argse.core.errors import ArgseError
from argse.data.logits import read_logit_set, split_file
from argse.data.long_tail import prepare_data
from argse.experts import (
    Expert,
    ExpertContext,
    StandardExpert,
    TrainRecipe,
    build_expert,
    get_expert,
    list_experts,
    load_plugins,
    load_recipe,
)
from argse.experts.base import EXPERTS, register_expert
from argse.experts.calibration import T_MAX, T_MIN
from argse.stages import experts as stage_experts
from argse.stages.run import RunStages
from tests.conftest import REPO, TINY_SCHEDULE

# The test plugins register before collection, so every contract test covers them as well.
TEST_PLUGINS = ["tests.plugins.tiny_expert"]
load_plugins(TEST_PLUGINS)


def test_builtin_experts_are_registered():
    assert {"ce", "logit_adjust", "balanced_softmax", "decoupling"} <= set(list_experts())
    assert list_experts() == sorted(list_experts())


def test_every_expert_class_in_the_package_is_registered():
    for info in pkgutil.iter_modules(argse.experts.__path__, "argse.experts."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, StandardExpert) and cls is not StandardExpert and cls.__module__ == module.__name__:
                assert get_expert(cls.name) is cls


def test_every_expert_yaml_names_a_registered_expert():
    assert {p.stem for p in (REPO / "experts").glob("*.yaml")} <= set(list_experts())


def test_unknown_expert_lists_available():
    # Every registered name, sorted (plugins that other test modules load at collection are among them).
    with pytest.raises(ArgseError, match=rf"^unknown expert 'cee'; available experts: {', '.join(list_experts())}$"):
        get_expert("cee")
    assert {"balanced_softmax", "ce", "decoupling"} <= set(list_experts()) and list_experts() == sorted(list_experts())


def test_duplicate_name_names_both_places():
    with pytest.raises(
        ValueError,
        match=r"expert 'ce' is registered twice: by argse.experts.ce.CrossEntropyExpert .* and by .*Impostor",
    ):

        @register_expert("ce")
        class Impostor(StandardExpert):
            pass


@pytest.mark.parametrize("name", list_experts())
def test_every_expert_recipe_validates(name):
    cfg = load_run_config(None, [f"recipes_dir={REPO / 'experts'}"])
    assert isinstance(load_recipe(get_expert(name), cfg), get_expert(name).Recipe)


def test_recipe_typo_names_the_dotted_path(tiny):
    cfg = load_run_config(None, tiny + ["recipes.decoupling.stage2.epochz=3"])
    with pytest.raises(ArgseError, match=r"unknown config key 'recipes\.decoupling\.stage2\.epochz' \(did you mean"):
        load_recipe(get_expert("decoupling"), cfg)


def _tiny_schedule(name: str) -> list[str]:
    """Overrides that shrink every TrainRecipe of expert ``name`` (its recipe, or stages in it) to TINY_SCHEDULE."""
    recipe = get_expert(name).Recipe()
    if isinstance(recipe, TrainRecipe):
        prefixes = [f"recipes.{name}"]
    else:
        prefixes = [
            f"recipes.{name}.{f}" for f in type(recipe).model_fields if isinstance(getattr(recipe, f), TrainRecipe)
        ]
    return [f"{prefix}.{k}={v}" for prefix in prefixes for k, v in TINY_SCHEDULE.items()]


def _nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(F.cross_entropy(logits.double() / temperature, labels))


@pytest.mark.parametrize("name", list_experts())
def test_expert_contract_train_calibrate_export(name, tiny, tmp_path):
    cls = get_expert(name)
    needs = cls.requires(load_recipe(cls, load_run_config(None, tiny)))
    assert all(isinstance(n, str) for n in needs)
    cfg = load_run_config(None, tiny + [s for n in [*needs, name] for s in _tiny_schedule(n)])
    if needs:  # what an expert requires is published first, as train_experts and --parallel do
        stage_experts.run(cfg, needs)
    stages = RunStages(cfg)
    exported = {n: stage_experts.exported(stages, n) for n in needs}
    ctx = ExpertContext(cfg, prepare_data(cfg), torch.device("cpu"), {name: tmp_path / "train"}, exported)
    expert = build_expert(name, ctx)
    assert isinstance(expert, Expert) and expert.name == name
    expert.train()
    temperature = expert.calibrate()
    logits = expert.held_out_logits()
    assert set(logits) == {"val", "tune", "test"}
    for split, x in logits.items():
        assert x.shape == (len(ctx.data.held_out[split].labels), ctx.data.num_classes)
    # What the run publishes of it: each split's logits, as written into its stage.
    work = tmp_path / "export"
    stage_experts.write_export(work, ctx, expert, logits, temperature, tmp_path / "train")
    for split in logits:
        (f,) = read_logit_set([split_file(work, split)])
        assert f.expert == name and f.split == split and f.temperature == temperature
        assert f.splits_sha256 == ctx.data.sha256 and torch.equal(f.labels, ctx.data.held_out[split].labels)
        assert torch.equal(f.logits, logits[split].float()) and f.config == expert.export_record()
    # The temperature is the NLL minimiser on val: no value of T on a fine grid (T = 1 included) does better.
    (val,) = read_logit_set([split_file(work, "val")])
    grid = torch.logspace(torch.tensor(T_MIN).log10(), torch.tensor(T_MAX).log10(), 400).tolist() + [1.0]
    assert _nll(val.logits, val.labels, temperature) <= min(_nll(val.logits, val.labels, t) for t in grid) + 1e-6


def test_build_expert_applies_recipe_changes_and_validates_them(tiny_cfg, tmp_path):
    ctx = ExpertContext(tiny_cfg, prepare_data(tiny_cfg), torch.device("cpu"), {"decoupling": tmp_path / "train"})
    expert = build_expert("decoupling", ctx, classifier="lws")
    assert expert.recipe.classifier == "lws" and expert.recipe.stage2.epochs == TINY_SCHEDULE["epochs"]
    with pytest.raises(ArgseError, match="bn: rebalanced needs a trained classifier"):
        build_expert("decoupling", ctx, classifier="tau_norm", bn="rebalanced")


def test_plugin_from_config_list(tiny):
    argv = _args(
        tiny,
        "label_smoothing",
        plugins="[tests.plugins.tiny_expert]",
        **{
            "recipes.label_smoothing.epochs": 1,
            "recipes.label_smoothing.batch_size": 16,
            "recipes.label_smoothing.warmup_epochs": 0,
            "recipes.label_smoothing.milestones": "[]",
        },
    )
    assert train_experts.main(argv) == 0


def _args(tiny, experts, **sets):
    argv = ["--experts", experts]
    for item in tiny + [f"{k}={v}" for k, v in sets.items()]:
        argv += ["--set", item]
    return argv


def test_plugin_from_entry_point(tiny, monkeypatch):
    sys.modules.pop("tests.plugins.tiny_expert", None)
    EXPERTS.unregister("label_smoothing")
    assert "label_smoothing" not in list_experts()
    ep = importlib.metadata.EntryPoint("label_smoothing", "tests.plugins.tiny_expert", "argse.experts")
    monkeypatch.setattr(argse.core.registry, "entry_points", lambda group: [ep] if group == "argse.experts" else [])
    load_plugins([])
    assert "label_smoothing" in list_experts()


def test_missing_plugin_module_is_a_clear_error():
    with pytest.raises(
        ArgseError,
        match=r"plugin module 'nope.nothing' could not be imported \(ModuleNotFoundError: .*fix it or its entry in 'plugins'",
    ):
        load_plugins(["nope.nothing"])


def test_train_experts_end_to_end_writes_every_split(tiny_cfg, tiny):
    assert train_experts.main(_args(tiny, "ce,balanced_softmax")) == 0
    stages = RunStages(tiny_cfg)
    for split in ("val", "tune", "test"):
        files = read_logit_set([split_file(stages.expert(e).folder, split) for e in ("ce", "balanced_softmax")])
        assert len(files) == 2
        # The readable names of the run lead to the same files.
        readable = read_logit_set(
            [split_file(tiny_cfg.out_dir / "logits" / e, split) for e in ("ce", "balanced_softmax")]
        )
        assert [torch.equal(a.logits, b.logits) for a, b in zip(files, readable, strict=True)] == [True, True]
    for e in ("ce", "balanced_softmax"):
        stage = stages.expert(e)  # its record names the recipe that made it; its training folder, the whole config
        assert stage.record.inputs["recipe"] == load_recipe(get_expert(e), tiny_cfg).model_dump()
        assert (stage.folder / "model.safetensors").is_file()
        assert (stages.store.training_folder(stages.expert_key(e)) / "config.yaml").is_file()
