"""A run config from its YAML file, ``--set a.b=c`` overrides and a command's own options, validated as
one; relative paths resolved against the file's folder; schedules scaled when epochs change."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from argse.config.schema import parse
from argse.config.sections import RunConfig
from argse.config.yaml_files import apply_overrides, deep_merge, read_yaml
from argse.core.errors import ArgseError
from argse.core.registry import load_plugins

# ---------------------------------------------------------------- generic machinery


# ---- where a config's relative paths start, and where the built-in recipes are


def builtin_folder(name: str) -> Path:
    """argse's own ``experts/`` or ``configs/``: shipped inside an installed wheel as ``argse.builtin.<name>``, else
    (a checkout, or an editable install of one) the folder at the top of the repository."""
    try:
        spec = importlib.util.find_spec(f"argse.builtin.{name}")
    except ModuleNotFoundError:  # a checkout: argse/builtin/ exists only in a wheel
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / name


BUILTIN_RECIPES = builtin_folder("experts")
BUILTIN_CONFIGS = builtin_folder("configs")


def builtin_config(given: str | Path) -> Path | None:
    """The built-in config that ``--config NAME`` names (asked only when no such file or folder is here): a bare
    file name (``cifar10_lt.yaml``, or without ``.yaml``) among argse's own configs, in a checkout or a wheel alike."""
    name = str(given)
    if Path(name).name != name:
        return None
    for candidate in (name, f"{name}.yaml"):
        if (BUILTIN_CONFIGS / candidate).is_file():
            return BUILTIN_CONFIGS / candidate
    return None


def missing_config(given: str | Path) -> ArgseError:
    names = sorted(p.name for p in BUILTIN_CONFIGS.glob("*.yaml"))
    return ArgseError(
        f"config file {given} does not exist; give a path, a run's outputs/NAME folder, or the name of a "
        f"built-in config: {', '.join(names)}"
    )


def config_base(config_file: str | Path | None) -> Path:
    """The folder a config file's relative paths (and the path defaults) are resolved against: the file's
    folder, or its parent when that folder is named ``configs`` (a project's ``configs/``, so
    ``configs/x.yaml`` writes ``outputs/`` beside ``configs/``); with no file, or a built-in config of an installed
    argse (never written into), the current folder."""
    if config_file is None:
        return Path.cwd()
    folder = Path(config_file).resolve().parent
    if folder == BUILTIN_CONFIGS.resolve() and Path(__file__).resolve().parents[1] in folder.parents:
        return Path.cwd()
    return folder.parent if folder.name == "configs" else folder


def resolve(path: str, base: Path) -> str:
    """``path`` as written, made absolute against ``base`` when relative (``~`` expanded first)."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else base / p)


# Config keys that hold a path. Written in a config file, a relative one is resolved against the file's base
# folder (config_base); given with --set, against the current folder, as any command-line path;
# left out, output_dir, checkpoint_dir and data.root take their defaults under the base folder.
PATH_KEYS = ("output_dir", "checkpoint_dir", "recipes_dir", "data.root", "data.imagefolder_lt.cache_dir")
DEFAULT_PATHS = {"output_dir": "outputs", "checkpoint_dir": "checkpoints", "data.root": "data"}


def _lookup(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _place(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            return  # a section that is not a mapping: the model reports it
        node = node[part]
    node[leaf] = value


def resolve_paths(data: dict, base: Path, keys: tuple[str, ...] = PATH_KEYS) -> dict:
    """``data`` with every relative path under ``keys`` made absolute against ``base`` (in place)."""
    for key in keys:
        value = _lookup(data, key)
        if isinstance(value, str) and value:
            _place(data, key, resolve(value, base))
    return data


def set_by(overrides: list[str], dotted: str) -> bool:
    """Whether one of the ``--set`` strings sets ``dotted`` (itself or a section holding it)."""
    keys = [item.partition("=")[0] for item in overrides]
    return any(dotted == k or dotted.startswith(k + ".") for k in keys)


def file_data(path: str | Path | None) -> dict:
    """The config file's mapping with its relative paths resolved against its base folder ({} for None)."""
    return resolve_paths(read_yaml(path), config_base(path)) if path else {}


def scale_schedule(old: dict | Any, epochs: int, keep: Any = ()) -> tuple[dict, dict[str, str]]:
    """``old``'s warm-up and milestones (a mapping or a recipe) in proportion to ``epochs`` instead of its
    epochs (rounded, at least 1, at most ``epochs``), except the keys in ``keep``; and per key, why."""
    get = old.get if isinstance(old, dict) else lambda k, d=None: getattr(old, k, d)
    before, warmup, milestones = get("epochs"), get("warmup_epochs"), get("milestones")
    if not isinstance(before, int) or before < 1 or not isinstance(epochs, int) or epochs < 1 or epochs == before:
        return {}, {}
    ratio, why = epochs / before, f"scaled with epochs {before} -> {epochs}"
    out, notes = {}, {}
    if "warmup_epochs" not in keep and isinstance(warmup, int) and warmup > 0:
        out["warmup_epochs"], notes["warmup_epochs"] = (
            min(epochs, max(1, round(warmup * ratio))),
            f"{why} (was {warmup})",
        )
    if "milestones" not in keep and isinstance(milestones, list) and milestones:
        if all(isinstance(m, int) for m in milestones):
            out["milestones"] = [min(epochs, max(1, round(m * ratio))) for m in milestones]
            notes["milestones"] = f"{why} (was {milestones})"
    return out, notes


def scale_written(data: dict, written: dict, given: dict, where: str = "") -> dict[str, str]:
    """Where ``given`` (the --set part) changes an ``epochs`` that ``written`` (the config file) states beside a
    warm-up or milestones, scale those in ``data`` (the merged config, in place) to the new epochs; returns
    'dotted key -> why' per scaled value (argse.config.recipe_layers scales the recipe files' schedules the same way)."""
    notes: dict[str, str] = {}
    if not all(isinstance(x, dict) for x in (data, written, given)):
        return notes  # a section that is not a mapping: the model reports it
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(written.get(key), dict) and isinstance(data.get(key), dict):
            notes |= scale_written(data[key], written[key], value, f"{where}{key}.")
    if "epochs" in given:
        changes, why = scale_schedule(written, given["epochs"], keep=given)
        data.update(changes)
        notes |= {f"{where}{k}": v for k, v in why.items()}
    return notes


def leaves(data: Any, prefix: str = "") -> list[str]:
    """The dotted keys of every value in nested mappings ``data`` that is not itself a mapping."""
    if not isinstance(data, dict):
        return []
    keys = []
    for k, v in data.items():
        keys += leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return keys


def recorded_plugins(cfg: RunConfig) -> list[str]:
    """The plugins the run of ``cfg`` recorded in its outputs/NAME/config.yaml when it was trained ([] if none)."""
    path = cfg.out_dir / "config.yaml"
    return parse(RunConfig, {"plugins": read_yaml(path).get("plugins", [])}).plugins if path.is_file() else []


def run_folder(folder: Path, overrides: list[str]) -> tuple[Path, list[str]]:
    """A run's ``outputs/NAME`` folder given as its config: the config.yaml the run wrote there, read as the run
    where the folder is now (it may have been moved since)."""
    if not (folder / "config.yaml").is_file():
        raise ArgseError(f"{folder} is a folder without config.yaml; give a config file or a run's outputs/NAME folder")
    return folder / "config.yaml", [f"output_dir={folder.resolve().parent}", f"name={folder.name}", *overrides]


def load_run_config(path: str | Path | None, overrides: list[str] = (), values: dict | None = None) -> RunConfig:
    """The run config of YAML file ``path`` (None: the defaults), then ``--set`` ``overrides``, then nested
    ``values`` (what an entry point's own options set, e.g. evaluate's --methods), validated as one; it
    remembers where each value came from (``cfg.origin(dotted)``, for --print-config).

    Paths: see PATH_KEYS; the resolved config never depends on the current folder unless a --set names one.
    """
    overrides = list(overrides)
    if path is not None and Path(path).is_dir():
        path, overrides = run_folder(Path(path), overrides)
    elif path is not None and not Path(path).exists():
        found = builtin_config(path)
        if found is None:
            raise missing_config(path)
        path = found
    written = file_data(path)
    data = apply_overrides(written, overrides)
    # --set recipes.ce.epochs=4 over a config that writes ce's whole schedule keeps its shape, too.
    scaled = scale_written(
        data.get("recipes") or {}, written.get("recipes") or {}, apply_overrides({}, overrides).get("recipes") or {}
    )
    resolve_paths(data, Path.cwd(), tuple(k for k in PATH_KEYS if set_by(overrides, k)))
    base = config_base(path)
    if data.get("data") is None:
        data["data"] = {}
    for key, default in DEFAULT_PATHS.items():
        if _lookup(data, key) is None:
            _place(data, key, str(base / default))
    data = deep_merge(data, values or {})
    plugins = parse(RunConfig, {"plugins": data.get("plugins", [])}).plugins
    if path is not None and plugins and str(base) not in sys.path:
        sys.path.append(str(base))  # a plugin module beside the config imports from any folder
    # Plugins first: what they register (a dataset, a rejector) may be named anywhere in the config.
    load_plugins(plugins)
    cfg = parse(RunConfig, data)
    origins = {k: str(path) for k in leaves(written)}
    origins |= {f"recipes.{k}": f"{why}, in {path}" for k, why in scaled.items()}
    origins |= {k: f"--set {item}" for item in overrides for k in leaves(apply_overrides({}, [item]))}
    origins |= {k: "the command's options" for k in leaves(values or {})}
    cfg._origins = origins
    return cfg


def _as_written(data: Any) -> Any:
    """A run config's dict as a user writes it: a dataset's section back under ``data``, not ``data.sections``."""
    if not isinstance(data, dict):
        return data
    out = {k: _as_written(v) if k == "run" else v for k, v in data.items()}
    if isinstance(out.get("data"), dict) and "sections" in out["data"]:
        out["data"] = {**{k: v for k, v in out["data"].items() if k != "sections"}, **out["data"]["sections"]}
    return out


def dump_yaml(obj: Any) -> str:
    data = obj.model_dump() if isinstance(obj, BaseModel) else obj
    return yaml.safe_dump(_as_written(data), sort_keys=False)
