import re
from pathlib import Path

import pytest

from argse.config.loading import load_run_config
from argse.config.schema import parse
from argse.config.sections import RunConfig
from argse.config.yaml_files import apply_overrides
from argse.core.errors import ArgseError
from argse.data.splits import lt_counts

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    assert isinstance(load_run_config(path), RunConfig)


CIFAR_TRAIN_MAX = {"cifar10_lt": 5000, "cifar100_lt": 500}  # images per class of the official train sets


def _header(path: Path) -> str:
    lines = path.read_text().splitlines()
    return " ".join(
        line.lstrip("# ") for line in lines[: next(i for i, x in enumerate(lines) if not x.startswith("#"))]
    )


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_header_says_what_it_holds(path):
    """The header's imbalance factor and data source are the config's, no config points at this project's
    own machines, and a CIFAR config's groups are not empty at its imbalance factor."""
    cfg, header = load_run_config(path), _header(path)
    stated = re.findall(r"(?:imbalance factor|IF=)\s*(\d+)", header)
    assert (
        stated
        and {float(x) for x in stated} == {cfg.data.imbalance_factor}
        or cfg.data.dataset
        in (
            "list_lt",
            "synthetic_lt",
        )
    ), f"{path.name}: header says IF {stated}, config {cfg.data.imbalance_factor}"
    assert "../shared" not in path.read_text().split("\n", header.count("\n") + 1)[-1]  # not in the settings
    if cfg.data.dataset in CIFAR_TRAIN_MAX:
        assert "torchvision" in header, f"{path.name}: the header should say it reads torchvision's files"
        n = CIFAR_TRAIN_MAX[cfg.data.dataset]
        counts = lt_counts(n, 10 if n == 5000 else 100, cfg.data.imbalance_factor)
        assert min(counts) <= cfg.data.tail_max_count < max(counts), f"{path.name}: an empty head or tail group"


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

    cfg = load_run_config(None, ["data.synthetic_lt.classes=4", "data.list_lt.resize=300"])
    assert cfg.data.sections == {"synthetic_lt": {"classes": 4}, "list_lt": {"resize": 300}}
    assert parse(RunConfig, cfg.model_dump()) == cfg  # as the run's config.yaml is written
    with pytest.raises(ArgseError, match=r"unknown config key 'data\.classes'; valid keys: dataset, root, .*few_max_count, "
                       r"and sections named after a dataset$"):  # fmt: skip
        load_run_config(None, ["data.classes=4"])


def test_plugins_are_loaded_with_the_config():
    from argse.data.datasets import DATASETS

    DATASETS.unregister("stripes_lt")
    __import__("sys").modules.pop("tests.plugins.stripes_dataset", None)
    assert load_run_config(None, ["plugins=[tests.plugins.stripes_dataset]"]).plugins == [
        "tests.plugins.stripes_dataset"
    ]
    assert "stripes_lt" in DATASETS
    with pytest.raises(
        ArgseError, match=r"^'plugins' names '', which is no module name; give absolute dotted names such as"
    ):
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

    cfg = load_run_config(None, ["name=x"])
    assert parse(RunConfig, cfg.model_dump()) == cfg


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
        ("gating.lr=-1", r"config key 'gating\.lr' must be > 0, got -1"),
        ("gating.dropout=1.5", r"config key 'gating\.dropout' must be < 1, got 1\.5"),
        ("gating.epochs=0", r"invalid config in 'gating': epochs must be >= 1 for gate 'learned' \(got 0\)"),
        ("evaluate.rejection_grid=[]", r"config key 'evaluate\.rejection_grid' must hold at least 1 value, got \[\]"),
        ("evaluate.mu_grid=[]", r"config key 'evaluate\.mu_grid' must hold at least 1 value, got \[\]"),
        ("evaluate.power_iters=0", r"config key 'evaluate\.power_iters' must be >= 1, got 0"),
        ("evaluate.worst_rounds=0", r"config key 'evaluate\.worst_rounds' must be >= 1, got 0"),
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
        (["evaluate.methods=[]"], r"config key 'evaluate\.methods' must hold at least 1 value"),
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


# ---------------------------------------------------------------- every value checked at load (hostile pass)
# Each of these passed the checks before and then crashed with a torch traceback or ran silently wrong.


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gating.lr=.inf", r"config key 'gating\.lr' must be a finite number, got inf"),
        ("data.imbalance_factor=.nan", r"config key 'data\.imbalance_factor' must be a finite number, got nan"),
        ("data.val_fraction=.nan", r"config key 'data\.val_fraction' must be a finite number, got nan"),
        ("evaluate.worst_step=.inf", r"config key 'evaluate\.worst_step' must be a finite number, got inf"),
        ("evaluate.mu_grid=[0.0, .nan]", r"config key 'evaluate\.mu_grid\[1\]' must be a finite number, got nan"),
        ("experts=[]", r"config key 'experts' must hold at least 1 value"),
        ("runtime.eval_batch_size=0", r"config key 'runtime\.eval_batch_size' must be >= 1, got 0"),
        ("runtime.threads=-1", r"config key 'runtime\.threads' must be >= 0, got -1"),
        ("runtime.workers=-1", r"config key 'runtime\.workers' must be >= 0, got -1"),
        ("model.width=0", r"config key 'model\.width' must be >= 1, got 0"),
        ("data.tail_max_count=0", r"config key 'data\.tail_max_count' must be >= 1, got 0"),
        ("data.few_max_count=200", r"invalid config in 'data': few_max_count must lie in \[0, many_min_count=100\]"),
        ("gating.selective_rule_lr=0", r"config key 'gating\.selective_rule_lr' must be > 0, got 0"),
        ("gating.seed=-1", r"config key 'gating\.seed' must be >= 0, got -1"),
        ("name=../../x", r"invalid config: name must be a plain folder name .*, got '\.\./\.\./x'"),
        ("name=/tmp/x", r"name must be a plain folder name .*, got '/tmp/x'"),
        ("name=''", r"name must be a plain folder name \(not empty, .*got ''"),
        ("name=.hidden", r"name must be a plain folder name .*, got '\.hidden'"),
        ("name=a\\b", r"name must be a plain folder name .*, got 'a\\\\b'"),
        (
            "data.synthetic_lt={classes: 4, classes: 5}",
            r"'data\.synthetic_lt=.*' is refused: key 'classes' appears twice",
        ),
    ],
)
def test_every_value_is_checked_at_load(override, message):
    with pytest.raises(ArgseError, match=message):
        load_run_config(None, [override])


def test_an_output_folder_under_a_regular_file_is_one_sentence(tmp_path):
    (tmp_path / "afile").write_text("x")
    for key in ("output_dir", "checkpoint_dir"):
        with pytest.raises(ArgseError, match=rf"{key}='.*afile/o' is not a folder: .*afile is a regular file"):
            load_run_config(None, [f"{key}={tmp_path}/afile/o"])


def test_make_dir_under_a_regular_file_is_one_sentence(tmp_path):
    from argse.core.storage import make_dir

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ArgseError, match=r"cannot make folder .*afile/o/p: .*afile is a regular file"):
        make_dir(tmp_path / "afile" / "o" / "p")


def _recipe(name: str, values: dict):
    from argse.experts import get_expert

    cls = get_expert(name)
    return parse(cls.Recipe, values, f"recipes.{name}")


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("ce", {"lr": -1}, r"config key 'recipes\.ce\.lr' must be > 0, got -1"),
        ("ce", {"lr": float("inf")}, r"config key 'recipes\.ce\.lr' must be a finite number, got inf"),
        ("ce", {"momentum": -1}, r"config key 'recipes\.ce\.momentum' must be >= 0, got -1"),
        ("ce", {"dropout": 1.5}, r"config key 'recipes\.ce\.dropout' must be < 1, got 1\.5"),
        ("ce", {"weight_decay": -1}, r"config key 'recipes\.ce\.weight_decay' must be >= 0, got -1"),
        ("ce", {"gamma": 0}, r"config key 'recipes\.ce\.gamma' must be > 0, got 0"),
        ("ce", {"epochs": 10, "milestones": [5, 12]}, r"milestones must lie within the epochs .*epochs=10\), got 12"),
        ("ce", {"epochs": 3, "warmup_epochs": 4}, r"warmup_epochs must lie in \[0, epochs=3\] .*, got 4"),
        ("ce", {"batch_size": 0}, r"config key 'recipes\.ce\.batch_size' must be >= 1, got 0"),
        ("logit_adjust", {"tau": float("nan")}, r"'recipes\.logit_adjust\.tau' must be a finite number, got nan"),
        ("logit_adjust", {"tau": -1}, r"config key 'recipes\.logit_adjust\.tau' must be >= 0"),
        ("logit_adjust", {"nesterov": True, "momentum": 0.0}, r"nesterov needs momentum > 0, got momentum 0"),
        (
            "posthoc_adjust",
            {"tau_grid": [1.0, float("nan")]},
            r"'recipes\.posthoc_adjust\.tau_grid\[1\]' must be a fin",
        ),
        ("posthoc_adjust", {"tau_grid": [-1.0]}, r"config key 'recipes\.posthoc_adjust\.tau_grid\[0\]' must be >= 0"),
        ("decoupling", {"tau_grid": []}, r"config key 'recipes\.decoupling\.tau_grid' must hold at least 1 value"),
        ("decoupling", {"stage2": {"lr": -1}}, r"config key 'recipes\.decoupling\.stage2\.lr' must be > 0, got -1"),
        ("decoupling", {"stage1": {"epochs": 10}}, r"in 'recipes\.decoupling\.stage1': milestones must lie within"),
    ],
)
def test_recipe_values_are_checked(name, values, message):
    with pytest.raises(ArgseError, match=message):
        _recipe(name, values)


def test_cosine_recipe_ignores_its_milestones():
    assert _recipe("ce", {"epochs": 10, "schedule": "cosine", "milestones": [160, 180]}).epochs == 10


@pytest.mark.parametrize(
    ("dataset", "values", "message"),
    [
        ("synthetic_lt", {"classes": 0}, r"config key 'data\.synthetic_lt\.classes' must be >= 1, got 0"),
        ("synthetic_lt", {"test_per_class": 0}, r"config key 'data\.synthetic_lt\.test_per_class' must be >= 1, got 0"),
        ("list_lt", {"train_list": "a", "test_lists": ["b"], "resize": 100}, r"resize >= image_size .*resize 100"),
    ],
)
def test_dataset_options_are_checked(dataset, values, message):
    from argse.data.datasets import get_dataset

    with pytest.raises(ArgseError, match=message):
        parse(get_dataset(dataset).Options, values, f"data.{dataset}")


def _yaml_file(tmp_path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def _alias_bomb() -> str:  # 459 bytes that expand to 9^9 lists
    lines = ["name: demo", "a0: &a0 [x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: demo\nseed: 1\nseed: 2\n", r"run\.yaml is refused: key 'seed' appears twice in one mapping \(line 3\)"),
        ("data:\n  dataset: synthetic_lt\n  dataset: cifar10_lt\n", r"key 'dataset' appears twice .*\(line 3\)"),
        (_alias_bomb(), r"run\.yaml is refused: its anchors and aliases expand to more than 100000 values"),
        ("name: demo\nrecipes: " + "[" * 900 + "]" * 900 + "\n", r"refused: it nests deeper than 50 levels"),
        ("name: demo\nloop: &a [*a]\n", r"refused: alias \*a refers to a collection that holds it"),
    ],
    ids=["duplicate", "duplicate-nested", "alias-bomb", "deep", "self-alias"],
)
def test_hostile_yaml_is_one_sentence(tmp_path, text, message):
    with pytest.raises(ArgseError, match=message):
        load_run_config(_yaml_file(tmp_path, text))


def test_a_huge_config_file_is_refused(tmp_path):
    with pytest.raises(ArgseError, match=r"run\.yaml is 1000014 bytes; a config file may hold at most 1000000 bytes"):
        load_run_config(_yaml_file(tmp_path, "name: demo\n# " + "x" * 1_000_000 + "\n"))


def test_merge_keys_and_anchors_still_load(tmp_path):
    text = "name: demo\nrecipes:\n  ce: &s {epochs: 3, milestones: [1]}\n  logit_adjust: {<<: *s, epochs: 4}\n"
    cfg = load_run_config(_yaml_file(tmp_path, text))
    assert cfg.recipes == {"ce": {"epochs": 3, "milestones": [1]}, "logit_adjust": {"epochs": 4, "milestones": [1]}}


def _source(test_per_class: int):
    import torch

    from argse.data.datasets import Source

    train = torch.arange(10).repeat_interleave(100)
    test = torch.arange(10).repeat_interleave(test_per_class)
    return Source(train, train, test, test, [f"class_{i}" for i in range(10)])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["data.test_fraction=0.01"], r"data\.test_fraction=0\.01 leaves class 'class_0' \(20 official test images\) "
                                      r"with no test image; raise data\.test_fraction"),
        (["data.val_fraction=0.02"], r"data\.val_fraction=0\.02 leaves class 'class_0' .* with no val image"),
        (["data.tune_fraction=0.02"], r"data\.tune_fraction=0\.02 leaves class 'class_0' .* with no tune image"),
        (["data.tail_max_count=0"], r"config key 'data\.tail_max_count' must be >= 1, got 0"),
        (["data.tail_max_count=1", "data.few_max_count=1"],
         r"data\.tail_max_count=1 leaves the tail group empty: the smallest class has 10 training images"),
        (["data.tail_max_count=100"],
         r"data\.tail_max_count=100 leaves the head group empty: the largest class has 100 training images"),
    ],
)  # fmt: skip
def test_splits_and_groups_too_small_are_refused_where_the_counts_are_known(sets, message):
    from argse.data.splits import make_manifest

    with pytest.raises(ArgseError, match=message):
        cfg = load_run_config(None, ["data.imbalance_factor=10", *sets])
        make_manifest(_source(20), cfg.data, 0)


def test_a_split_of_one_image_per_class_is_enough():
    from argse.data.splits import make_manifest

    cfg = load_run_config(None, ["data.imbalance_factor=10", "data.val_fraction=0.34", "data.tune_fraction=0.33",
                                 "data.test_fraction=0.33"])  # fmt: skip
    manifest = make_manifest(_source(3), cfg.data, 0)
    assert [len(manifest["splits"][s]) for s in ("val", "tune", "test")] == [10, 10, 10]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ("runtime.device=banana", r"^invalid config in 'runtime': device is 'banana', which names no device; use auto"),
        ("plugins=[.rel]", r"^'plugins' names '\.rel', which is no module name; give absolute dotted names"),
        ("plugins=[a/b]", r"^'plugins' names 'a/b', which is no module name"),
        ("plugins=[tests.plugins.raises_at_import]", r"^plugin module '.*' could not be imported \(RuntimeError: "),
    ],
)
def test_a_bad_device_or_plugin_is_one_sentence(sets, message):
    with pytest.raises(ArgseError, match=message):
        load_run_config(None, [sets])


def test_predict_s_device_is_checked_like_the_config_s():
    from argse.inference.team import open_predictor

    with pytest.raises(ArgseError, match=r"^device is 'banana', which names no device"):
        open_predictor(load_run_config(None), None, "chow", 0.2, device="banana")


def test_a_run_folder_is_a_config_where_it_is_now(tmp_path):
    """``--config outputs/NAME`` (and argse.inference.load) reads the config.yaml the run wrote, as the run where the
    folder is now; a folder without one is one sentence."""
    from argse.config.loading import dump_yaml

    run = tmp_path / "moved" / "renamed"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_yaml(load_run_config(None, ["name=original", "gating.epochs=7"])))
    cfg = load_run_config(run)
    assert (cfg.name, cfg.out_dir, cfg.gating.epochs) == ("renamed", run.resolve(), 7)
    with pytest.raises(ArgseError, match=r"is a folder without config\.yaml; give a config file or a run's outputs/"):
        load_run_config(tmp_path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a\nb", r"name must be printable \(no newline, tab or control character\)"),
        ("x" * 101, r"name must be at most 100 bytes, got 101"),
    ],
)
def test_a_run_name_is_printable_and_short(name, message):
    with pytest.raises(ArgseError, match=rf"^invalid config: {message}"):
        parse(RunConfig, {"name": name})


@pytest.mark.parametrize(
    ("code", "message"), [(27, r"File too large \(a file-size limit"), (36, r"name too long; choose a shorter")]
)
def test_a_file_size_limit_or_a_long_name_is_one_sentence_naming_the_path(tmp_path, code, message):
    import errno as _errno

    from argse.core import storage

    def refused(tmp):
        raise OSError(code, _errno.errorcode[code])

    with pytest.raises(ArgseError, match=rf"^cannot write {tmp_path}/f\.txt: .*{message}"):
        storage.atomic_write(tmp_path / "f.txt", refused)
