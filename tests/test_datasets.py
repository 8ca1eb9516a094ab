"""The dataset registry: built-ins and plugins register the same way, each with its own config section."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import argse.core.registry
from argse import train_experts
from argse.config.loading import load_run_config
from argse.config.schema import Section
from argse.core.errors import ArgseError
from argse.core.registry import RegistryError, load_plugins
from argse.data.datasets import DATASETS, Dataset, dataset_for, list_datasets, register_dataset
from argse.data.logits import read_logits, split_file
from argse.data.long_tail import prepare_data
from argse.data.preprocess import eval_image, preprocess_record
from argse.stages.run import RunStages
from tests.conftest import TINY_SCHEDULE

PLUGIN = "tests.plugins.stripes_dataset"
BUILTIN = ["cifar100_lt", "cifar10_lt", "imagefolder_lt", "list_lt", "synthetic_lt"]


def _stripes(tiny: list[str], *extra: str) -> list[str]:
    return tiny + [f"plugins=[{PLUGIN}]", "data.dataset=stripes_lt", "data.stripes_lt.per_class=30", *extra]


def test_the_builtins_are_registered():
    assert set(BUILTIN) <= set(list_datasets())


def test_unknown_dataset_lists_the_registered_ones(tiny):
    cfg = load_run_config(None, tiny + ["data.dataset=imagenet"])  # a plain string: plugins may add datasets
    with pytest.raises(ArgseError, match=r"^unknown dataset 'imagenet'; available datasets: cifar100_lt, cifar10_lt, "):
        prepare_data(cfg)


def test_a_dataset_registered_twice_names_both_places():
    with pytest.raises(
        RegistryError,
        match=r"^dataset 'synthetic_lt' is registered twice: by argse\.data\.datasets\.SyntheticLT \(.*datasets\.py\) and by "
        r"(tests\.)?test_datasets\..*AnotherSynthetic \(.*test_datasets\.py\); rename one of them$",
    ):

        @register_dataset("synthetic_lt")
        class AnotherSynthetic(Dataset):
            pass

    assert DATASETS.get("synthetic_lt").__name__ == "SyntheticLT"


def test_options_are_checked_under_their_dotted_path(tiny):
    with pytest.raises(ArgseError, match=r"config key 'data\.synthetic_lt\.classes' must be an integer, got 'ten'"):
        dataset_for(load_run_config(None, tiny + ["data.synthetic_lt.classes=ten"]).data)
    with pytest.raises(ArgseError, match=r"unknown config key 'data\.synthetic_lt\.clases' \(did you mean .*classes"):
        dataset_for(load_run_config(None, tiny + ["data.synthetic_lt.clases=4"]).data)
    # A section of a dataset that is not the one in use is checked too: a typo never falls back to a default.
    with pytest.raises(ArgseError, match=r"config key 'data\.list_lt\.resize' must be an integer"):
        dataset_for(load_run_config(None, tiny + ["data.list_lt.resize=big"]).data)


def test_a_misspelt_section_is_an_error_naming_the_datasets(tiny):
    cfg = load_run_config(None, tiny + ["data.synthetic_l.classes=4"])
    with pytest.raises(
        ArgseError, match=r"^unknown config section 'data\.synthetic_l' \(did you mean 'data\.synthetic_lt'\?\); .*"
    ):
        dataset_for(cfg.data)


def test_options_come_from_the_section_of_the_dataset(tiny):
    d = dataset_for(load_run_config(None, tiny + ["data.synthetic_lt.classes=3"]).data)
    assert d.name == "synthetic_lt" and d.options.classes == 3 and d.options.image_size == 8


@pytest.mark.parametrize("name", sorted(set(BUILTIN) | {"stripes_lt"}))
def test_every_registered_dataset_keeps_the_contract(name):
    load_plugins([PLUGIN])
    cls = DATASETS.get(name)
    assert issubclass(cls, Dataset) and cls.name == name and isinstance(cls.in_memory, bool)
    assert issubclass(cls.Options, Section)
    try:
        options = dataset_for(load_run_config(None, [f"data.dataset={name}"]).data).options
    except ArgseError as exc:  # options without a default (list_lt's lists) are asked for under their section
        assert f"'data.{name}'" in str(exc)
    else:
        assert isinstance(options, cls.Options)


def test_plugin_dataset_from_the_config_trains_an_expert_end_to_end(tiny, tmp_path):
    sets = _stripes(tiny, *(f"recipes.ce.{k}={v}" for k, v in TINY_SCHEDULE.items()))
    argv = ["--experts", "ce"]
    for item in sets:
        argv += ["--set", item]
    assert train_experts.main(argv) == 0
    cfg = load_run_config(None, sets)
    manifest = json.loads((cfg.out_dir / "splits.json").read_text())
    assert manifest["dataset"] == "stripes_lt" and manifest["classes"] == ["period_2", "period_3", "period_4"]
    assert manifest["class_counts"] == [30, 9, 3]  # the long-tailed profile at imbalance factor 10
    for split in ("val", "tune", "test"):
        f = read_logits(split_file(RunStages(cfg).expert("ce").folder, split))
        assert f.logits.shape == (len(manifest["splits"][split]), 3)
    prep = json.loads((cfg.out_dir / "preprocess.json").read_text())
    assert prep["dataset"] == "stripes_lt" and prep["image_size"] == [8, 8] and prep["resize"] is None


def test_plugin_dataset_from_an_entry_point(monkeypatch):
    sys.modules.pop(PLUGIN, None)
    DATASETS.unregister("stripes_lt")
    assert "stripes_lt" not in list_datasets()
    ep = importlib.metadata.EntryPoint("stripes_lt", PLUGIN, "argse.datasets")
    monkeypatch.setattr(argse.core.registry, "entry_points", lambda group: [ep] if group == "argse.datasets" else [])
    load_plugins([])
    assert "stripes_lt" in list_datasets()


def test_plugin_options_errors_name_the_plugin_section(tiny):
    cfg = load_run_config(None, _stripes(tiny, "data.stripes_lt.classes=1"))
    with pytest.raises(ArgseError, match=r"^config key 'data\.stripes_lt\.classes' must be >= 2, got 1$"):
        prepare_data(cfg)


def test_in_memory_eval_image_is_taken_as_it_is_at_the_training_size(tiny_cfg):
    data = prepare_data(tiny_cfg)
    record = preprocess_record(data)
    assert record["image_size"] == [8, 8] and record["resize"] is None and record["crop"] is None
    prep = SimpleNamespace(**{k: record[k] for k in ("image_size", "resize", "crop")})
    x = data.held_out["test"].images[0]
    assert torch.equal(eval_image(prep, Image.fromarray(x.permute(1, 2, 0).numpy())), x)
    with pytest.raises(ArgseError, match=r"^image a\.png is 9x8 pixels but the models of this run take 8x8; resize it"):
        eval_image(prep, Image.new("RGB", (9, 8)), "image a.png")


def _synthetic(tiny, *sets):
    return dataset_for(load_run_config(None, tiny + list(sets)).data).load()


def test_synthetic_signal_and_noise_set_how_hard_the_classes_are(tiny):
    default = _synthetic(tiny)
    explicit = _synthetic(tiny, "data.synthetic_lt.signal=60", "data.synthetic_lt.noise=100")
    assert torch.equal(default.train_images, explicit.train_images)  # the defaults are the data the tests train on
    clean = _synthetic(tiny, "data.synthetic_lt.noise=0")
    for c in range(4):  # without noise every image of a class is its pattern
        same = clean.train_images[clean.train_labels == c]
        assert (same == same[0]).all()
    # A weaker pattern: a third of the distance from mid-grey (60 -> 20), up to rounding and clipping at 0 and 255.
    faint = _synthetic(tiny, "data.synthetic_lt.noise=0", "data.synthetic_lt.signal=20")
    spread = [(s.train_images.float() - 128).abs().mean() for s in (clean, faint)]
    assert 0.3 < spread[1] / spread[0] < 0.4


@pytest.mark.parametrize(("key", "value", "bound"), [("signal", "0", "> 0"), ("noise", "-1", ">= 0")])
def test_synthetic_signal_and_noise_are_checked(tiny, key, value, bound):
    with pytest.raises(ArgseError, match=rf"^config key 'data\.synthetic_lt\.{key}' must be {bound}, got {value}$"):
        _synthetic(tiny, f"data.synthetic_lt.{key}={value}")
