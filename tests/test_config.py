from pathlib import Path

import pytest

from argse.config import RunConfig, apply_overrides, from_dict, load_run_config
from argse.errors import ArgseError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    assert isinstance(load_run_config(path), RunConfig)


def test_override_sets_nested_value_with_yaml_types():
    cfg = load_run_config(None, ["data.imbalance_factor=50", "model.depth=20", "evaluate.methods=[chow]"])
    assert cfg.data.imbalance_factor == 50.0 and cfg.model.depth == 20 and cfg.evaluate.methods == ["chow"]


def test_unknown_key_names_dotted_path_suggestion_and_valid_keys():
    with pytest.raises(
        ArgseError,
        match=r"unknown config key 'data\.imbalance_factr' \(did you mean 'data\.imbalance_factor'\?\); valid keys: dataset, root",
    ):
        load_run_config(None, ["data.imbalance_factr=10"])


def test_wrong_type_is_an_error():
    with pytest.raises(ArgseError, match=r"config key 'model\.depth' must be an integer, got 'deep'"):
        load_run_config(None, ["model.depth=deep"])
    with pytest.raises(ArgseError, match=r"config key 'runtime\.progress' must be true or false"):
        load_run_config(None, ["runtime.progress=3"])


def test_literal_choice_lists_options():
    with pytest.raises(ArgseError, match=r"config key 'data\.dataset' is 'imagenet'; choose one of 'synthetic_lt'"):
        load_run_config(None, ["data.dataset=imagenet"])


def test_cross_field_check_quotes_section():
    with pytest.raises(ArgseError, match=r"invalid config in 'model': depth must be 6n\+2"):
        load_run_config(None, ["model.depth=33"])


def test_bad_override_syntax():
    with pytest.raises(ArgseError, match="must look like section.key=value"):
        apply_overrides({}, ["nonsense"])


def test_from_dict_round_trips_to_dict():
    from dataclasses import asdict

    cfg = load_run_config(None, ["name=x"])
    assert from_dict(RunConfig, asdict(cfg)) == cfg
