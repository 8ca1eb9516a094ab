"""A config means the same from every folder: its relative paths start at its base folder, the built-in
recipes are found beside the package, and a plugin can ship its own recipe."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from argse.config import load_run_config
from argse.errors import ArgseError
from argse.experts import get_expert, list_experts, load_recipe
from argse.experts.registry import EXPERTS
from argse.paths import config_base
from tests.tiny_run import REPO

SHIPPED = REPO / "configs" / "cifar100_lt.yaml"


def _recipes(config: Path) -> dict:
    cfg = load_run_config(config)
    return {name: dataclasses.asdict(load_recipe(get_expert(name), cfg)) for name in cfg.experts}


def test_the_same_config_resolves_the_same_recipes_from_two_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    at_root = _recipes(SHIPPED)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a folder without experts/: the built-in recipes must still be found
    assert _recipes(SHIPPED) == at_root
    assert at_root["logit_adjust"]["nesterov"] is True  # experts/logit_adjust.yaml, not the dataclass default
    assert at_root["balanced_softmax"]["schedule"] == "cosine"


def test_print_config_is_the_same_from_two_folders(tmp_path):
    """Two real processes, one in the repository, one in an empty folder: byte-identical resolved configs."""
    (tmp_path / "empty").mkdir()
    argv = [sys.executable, "-m", "argse.train_experts", "--config", str(SHIPPED), "--print-config"]
    outs = [
        subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True).stdout
        for cwd in (REPO, tmp_path / "empty")
    ]
    assert outs[0] == outs[1]
    assert f"output_dir: {REPO / 'outputs'}" in outs[0] and f"root: {REPO / 'data'}" in outs[0]
    assert f"nesterov: true  # {REPO / 'experts' / 'logit_adjust.yaml'}" in outs[0]


def test_relative_paths_start_at_the_config_files_base_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "configs").mkdir(parents=True)
    (project / "mine").mkdir()
    text = "output_dir: out\nrecipes_dir: mine\ndata: {root: ../datasets/x}\n"
    (project / "run.yaml").write_text(text)
    (project / "configs" / "run.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    beside = load_run_config(project / "run.yaml")
    assert (beside.output_dir, beside.recipes_dir) == (str(project / "out"), str(project / "mine"))
    assert Path(beside.data.root).resolve() == tmp_path / "datasets" / "x"
    # In a folder named configs/, paths start at its parent (the project), so both files mean the same.
    inside = load_run_config(project / "configs" / "run.yaml")
    assert config_base(project / "configs" / "run.yaml") == project
    assert (inside.output_dir, inside.recipes_dir, inside.data.root) == (
        beside.output_dir,
        beside.recipes_dir,
        beside.data.root,
    )
    # Left out, the path defaults live under the base folder too.
    (project / "bare.yaml").write_text("name: bare\n")
    bare = load_run_config(project / "bare.yaml")
    assert (bare.output_dir, bare.checkpoint_dir, bare.data.root) == tuple(
        str(project / p) for p in ("outputs", "checkpoints", "data")
    )


def test_a_path_given_with_set_is_relative_to_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "run.yaml").write_text("output_dir: out\n")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    cfg = load_run_config(tmp_path / "run.yaml", ["output_dir=here", "checkpoint_dir=/abs/c"])
    assert (cfg.output_dir, cfg.checkpoint_dir) == (str(tmp_path / "cwd" / "here"), "/abs/c")
    assert load_run_config(None).output_dir == str(tmp_path / "cwd" / "outputs")  # no file: the current folder


def test_a_recipes_dir_that_is_no_folder_is_refused(tmp_path):
    cfg = load_run_config(None, [f"recipes_dir={tmp_path / 'nope'}"])
    with pytest.raises(ArgseError, match=r"recipes_dir .*nope is not a folder; point it at a folder"):
        load_recipe(get_expert("ce"), cfg)


PLUGIN = '''
from pathlib import Path
from argse.experts import StandardExpert, register_expert

@register_expert("shipped_recipe")
class ShippedRecipe(StandardExpert):
    """A plugin expert that ships its recipe beside its module."""

    recipes_dir = Path(__file__).parent / "recipes"
'''


def test_a_plugin_ships_its_own_recipe_and_presets(tmp_path, monkeypatch):
    """The module sits beside the config (imported from any folder); its recipe and preset beside the module."""
    project = tmp_path / "project"
    (project / "recipes" / "presets").mkdir(parents=True)
    (project / "shipped_plugin.py").write_text(PLUGIN)
    (project / "recipes" / "shipped_recipe.yaml").write_text(
        "epochs: 40\nwarmup_epochs: 2\nmilestones: [30]\nlr: 0.3\n"
    )
    (project / "recipes" / "presets" / "shipped_recipe.long.yaml").write_text("epochs: 80\n")
    (project / "run.yaml").write_text("plugins: [shipped_plugin]\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the config's folder is appended for its plugins
    try:
        cfg = load_run_config(project / "run.yaml")
        assert "shipped_recipe" in list_experts()
        recipe = load_recipe(get_expert("shipped_recipe"), cfg)
        assert (recipe.epochs, recipe.lr, recipe.milestones) == (40, 0.3, [30])
        long = load_recipe(
            get_expert("shipped_recipe"), load_run_config(project / "run.yaml", ["recipes.shipped_recipe.preset=long"])
        )
        assert (long.epochs, long.warmup_epochs, long.milestones) == (80, 4, [60])  # scaled with the preset's epochs
    finally:
        EXPERTS.unregister("shipped_recipe")
        sys.modules.pop("shipped_plugin", None)
