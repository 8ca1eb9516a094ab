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
    with pytest.raises(
        ArgseError, match=r"config key 'model\.arch' is 'vgg'; choose one of 'resnet_cifar', 'resnet50'"
    ):
        load_run_config(None, ["model.arch=vgg"])


def test_a_dataset_section_is_kept_for_its_dataset_and_reads_back():
    from dataclasses import asdict

    cfg = load_run_config(None, ["data.synthetic_lt.classes=4", "data.list_lt.resize=300"])
    assert cfg.data.sections == {"synthetic_lt": {"classes": 4}, "list_lt": {"resize": 300}}
    assert from_dict(RunConfig, asdict(cfg)) == cfg  # as the run's config.yaml is written
    with pytest.raises(ArgseError, match=r"unknown config key 'data\.classes'; valid keys: dataset, root, .*few_max_count, "
                       r"and sections named after a dataset$"):  # fmt: skip
        load_run_config(None, ["data.classes=4"])


def test_plugins_are_loaded_with_the_config():
    from argse.datasets import DATASETS

    DATASETS.unregister("stripes_lt")
    __import__("sys").modules.pop("tests.plugins.stripes_dataset", None)
    assert load_run_config(None, ["plugins=[tests.plugins.stripes_dataset]"]).plugins == [
        "tests.plugins.stripes_dataset"
    ]
    assert "stripes_lt" in DATASETS
    with pytest.raises(ArgseError, match=r"^'plugins' holds an empty module name; give dotted module names such as"):
        load_run_config(None, ["plugins=['']"])
    with pytest.raises(ArgseError, match=r"^config key 'plugins\[0\]' must be a string, got 3$"):
        load_run_config(None, ["plugins=[3]"])


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


def test_set_does_not_leak_through_yaml_anchors():
    # configs/demo.yaml gives ce, logit_adjust and balanced_softmax one `&short` anchor.
    cfg = load_run_config(REPO / "configs" / "demo.yaml", ["recipes.ce.epochs=2", "recipes.logit_adjust.tau=0.5"])
    assert cfg.recipes["ce"]["epochs"] == 2
    assert cfg.recipes["logit_adjust"]["epochs"] == cfg.recipes["balanced_softmax"]["epochs"] == 15
    assert "tau" not in cfg.recipes["ce"] and "tau" not in cfg.recipes["balanced_softmax"]


def test_anchored_yaml_loads_as_separate_objects(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("recipes:\n  ce: &s {milestones: [1, 2]}\n  logit_adjust: *s\n")
    cfg = load_run_config(path)
    assert cfg.recipes["ce"] is not cfg.recipes["logit_adjust"]
    assert cfg.recipes["ce"]["milestones"] is not cfg.recipes["logit_adjust"]["milestones"]


def test_config_that_is_not_utf8_is_one_sentence(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ArgseError, match=r"config file .*latin1\.yaml is not UTF-8 text \(byte 0xe9 at offset 9\)"):
        load_run_config(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("gating.lr=-1", r"invalid config in 'gating': lr must be > 0, got -1\.0"),
        ("gating.dropout=1.5", r"invalid config in 'gating': dropout must lie in \[0, 1\), got 1\.5"),
        ("gating.epochs=0", r"invalid config in 'gating': epochs must be >= 1 for gate 'learned' \(got 0\)"),
        ("evaluate.rejection_grid=[]", r"invalid config in 'evaluate': rejection_grid must hold at least one"),
        ("evaluate.mu_grid=[]", r"invalid config in 'evaluate': mu_grid must hold at least one value"),
        ("evaluate.power_iters=0", r"invalid config in 'evaluate': power_iters must be >= 1, got 0"),
        ("evaluate.worst_rounds=0", r"invalid config in 'evaluate': worst_rounds must be >= 1, got 0"),
    ],
)
def test_gating_and_evaluate_values_are_checked_on_load(override, message):
    with pytest.raises(ArgseError, match=message):
        load_run_config(None, [override])


def test_untrained_gate_is_fine_when_not_learned():
    assert load_run_config(None, ["gating.epochs=0", "gating.gate=uniform"]).gating.epochs == 0


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["gating.gate=fixed"], r"in 'gating': fixed_weights must hold one non-negative weight per expert"),
        (["gating.gate=fixed", "gating.fixed_weights=[1.0, -1.0]"], r"fixed_weights .* \(got \[1\.0, -1\.0\]\)"),
        (["gating.gate=fixed", "gating.fixed_weights=[0.0, 0.0]"], r"not all zero"),
        (["evaluate.methods=[gate_rule]"], r"in 'evaluate': methods: 'gate_rule' is added by itself .*; remove it"),
        (["evaluate.methods=[chow, chow]"], r"methods names 'chow' twice"),
        (["evaluate.methods=[]"], r"methods must name at least one rejector"),
        (["experts=[ce, ce]"], r"'ce' is named twice in the config's 'experts' list"),
    ],
)
def test_fields_once_checked_by_entry_points_are_checked_at_load(sets, message):
    with pytest.raises(ArgseError, match=message):
        load_run_config(None, sets)


def test_entry_point_values_are_validated_like_the_file():
    """evaluate's --methods reaches the config as values on top of --set, and is checked there."""
    assert load_run_config(None, [], {"evaluate": {"methods": ["chow"]}}).evaluate.methods == ["chow"]
    with pytest.raises(ArgseError, match="in 'evaluate': methods names 'chow' twice"):
        load_run_config(None, ["evaluate.methods=[plugin_worst]"], {"evaluate": {"methods": ["chow", "chow"]}})
    assert load_run_config(None, ["gating.gate=fixed", "gating.fixed_weights=[1, 0]"]).gating.fixed_weights == [1, 0]


@pytest.mark.parametrize(
    ("key", "new"),
    [("data.synthetic_classes=4", "data.synthetic_lt.classes"), ("data.train_list=a.txt", "data.list_lt.train_list"),
     ("data.cache_dir=c", "data.imagefolder_lt.cache_dir")],
)  # fmt: skip
def test_a_key_that_moved_to_its_dataset_section_says_where(key, new):
    with pytest.raises(ArgseError, match=rf"unknown config key '{key.split('=')[0]}' \(it moved to .*'{new}'\)"):
        load_run_config(None, [key])
