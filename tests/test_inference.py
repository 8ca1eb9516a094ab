"""The expert protocol owns inference: every registered expert (plugins included), rebuilt from its
run's files by ``for_inference``, gives on the test images exactly the logits it exported."""

from __future__ import annotations

import pytest
import torch

from argse import train_experts
from argse.config.loading import load_run_config
from argse.data.logits import read_logits, split_file
from argse.data.long_tail import prepare_data
from argse.experts import inference_model, list_experts, load_plugins
from argse.stages.experts import exported
from argse.stages.run import RunStages
from argse.training import Normalize, outputs_of
from tests.conftest import TINY_SCHEDULE, tiny_overrides

PLUGINS = ["tests.plugins.tiny_expert", "tests.plugins.cosine_head"]
BUILTIN = ["ce", "logit_adjust", "balanced_softmax", "decoupling", "posthoc_adjust"]
load_plugins(PLUGINS)


def _run(tmp, name: str, experts: list[str], **extra: str) -> list[str]:
    sets = tiny_overrides(tmp, name=name, plugins=str(PLUGINS), **extra)
    sets += [f"recipes.{e}.{k}={v}" for e in experts if e not in BUILTIN for k, v in TINY_SCHEDULE.items()]
    assert train_experts.main([x for s in sets for x in ("--set", s)] + ["--experts", ",".join(experts)]) == 0
    return sets


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every registered expert in one tiny run, and decoupling's other two classifiers in runs of their own."""
    tmp = tmp_path_factory.mktemp("inference")
    everyone = ["ce", *[e for e in list_experts() if e != "ce"]]
    out = _run(tmp, "all", everyone)
    variants = {f"dec_{c}": _run(tmp, f"dec_{c}", ["decoupling"], **{"recipes.decoupling.classifier": c})
                for c in ("tau_norm", "lws")}  # fmt: skip
    return {"all": out, **variants}


def _check(sets: list[str], name: str) -> None:
    cfg = load_run_config(None, sets)
    data = prepare_data(cfg)
    device = torch.device("cpu")
    stages = RunStages(cfg)
    model, temperature = inference_model(cfg, exported(stages, name), data.num_classes, device)
    test = data.held_out["test"]
    normalize = Normalize(data.mean, data.std, device, cfg.runtime.channels_last)
    published = read_logits(split_file(stages.expert(name).folder, "test"))
    with torch.inference_mode():
        logits = outputs_of(model, test.images, normalize, device, cfg.runtime)
    assert temperature == published.temperature
    assert torch.equal(logits, published.logits), f"{name}: max diff {(logits - published.logits).abs().max()}"


@pytest.mark.parametrize("name", sorted(list_experts()))
def test_every_registered_expert_predicts_its_exported_logits(runs, name):
    _check(runs["all"], name)


@pytest.mark.parametrize("classifier", ["tau_norm", "lws"])
def test_decoupling_predicts_its_exported_logits_with_each_classifier(runs, classifier):
    _check(runs[f"dec_{classifier}"], "decoupling")


def test_the_plugin_head_is_really_there(runs):
    """The cosine plugin's network has its own head, so the contract above covers a head argse does not know."""
    cfg = load_run_config(None, runs["all"])
    model, _ = inference_model(cfg, exported(RunStages(cfg), "cosine_head"), 4, torch.device("cpu"))
    assert type(model.fc).__name__ == "CosineClassifier"
