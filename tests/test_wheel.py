"""argse installed from its wheel (not editable) reads the same built-in recipes, presets and configs as a
checkout: ``--print-config`` run from another folder equals the checkout's."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.tiny_run import REPO

CONFIG = "cifar100_lt_narasimhan2024.yaml"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed (without its dependencies) into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist")]
    subprocess.run([*build, str(REPO)], check=True, cwd=root, capture_output=True)
    (wheel,) = (root / "dist").glob("argse-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "argse/builtin/experts/ce.yaml" in names and f"argse/builtin/configs/{CONFIG}" in names
    assert "argse/builtin/experts/presets/css.narasimhan2024.yaml" in names
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    return target


def print_config(cwd: Path, pythonpath: Path, config: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    argv = [sys.executable, "-m", "argse.train_experts", "--config", str(config), "--print-config"]
    out = subprocess.run([*argv, "--set", "recipes.ce.epochs=20"], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_installed_wheel_reads_the_checkout_s_recipes(installed, tmp_path):
    where = subprocess.run([sys.executable, "-c", "import argse; print(argse.__file__)"], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True)  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(installed)  # the wheel's argse, not the checkout's
    config = tmp_path / CONFIG  # the same file, outside the checkout: every path resolves under tmp_path
    config.write_bytes((installed / "argse" / "builtin" / "configs" / CONFIG).read_bytes())
    ours = print_config(tmp_path, REPO, config)
    theirs = print_config(tmp_path, installed, config)
    built_in = "argse/builtin/experts/"
    assert theirs.count(built_in) > 10 and "# default" in theirs  # recipe values come from the shipped files
    assert theirs.replace(str(installed / "argse" / "builtin" / "experts"), str(REPO / "experts")) == ours


def test_a_built_in_config_is_named_by_its_name_and_writes_under_the_current_folder(installed, tmp_path):
    """An installed user has no configs/ folder to point at: ``--config NAME`` takes argse's own config, and its
    outputs go under the current folder, never into the installed package."""
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / CONFIG).write_bytes((REPO / "configs" / CONFIG).read_bytes())
    ours = print_config(copy, REPO, copy / CONFIG)  # the file itself, beside where the command runs
    ours = ours.split("\n", 1)[1].replace(str(copy), str(tmp_path))  # its first line names the file
    for name in (CONFIG, CONFIG.removesuffix(".yaml")):
        theirs = print_config(tmp_path, installed, Path(name))
        assert f"output_dir: {tmp_path}/outputs" in theirs
        theirs = theirs.replace(str(installed / "argse" / "builtin" / "experts"), str(REPO / "experts"))
        assert theirs.split("\n", 1)[1] == ours
    # A checkout names it too: its configs/ folder, whose outputs/ is beside it, as with --config configs/NAME.
    assert f"output_dir: {REPO}/outputs" in print_config(tmp_path, REPO, Path(CONFIG))
