"""An expert's recipe for a run, layer by layer, and where each of its values came from.

The layers, each over the one before: the recipe dataclass's defaults; ``<name>.yaml`` from the run's
``recipes_dir`` if it has one, else from the expert's own folder (argse's ``experts/`` for the built-ins,
the class attribute ``recipes_dir`` for a plugin that ships its YAML); the preset
``recipes.<name>.preset: P`` (``presets/<name>.P.yaml`` of the same folders); the run config's
``recipes.<name>`` (its file and ``--set``).

A layer that changes ``epochs`` but not ``warmup_epochs`` or ``milestones`` gets those of the layers
below scaled in proportion (rounded, at least 1, at most the epochs), so a shortened (or lengthened) schedule keeps its shape: ``--set recipes.ce.epochs=10`` turns
ce's warm-up 5 and milestones [160, 180] of 200 epochs into 1 and [8, 9].
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from argse.config.loading import BUILTIN_RECIPES, leaves, scale_schedule
from argse.config.schema import parse
from argse.config.sections import RunConfig
from argse.config.yaml_files import deep_merge, read_yaml
from argse.core import distributed
from argse.core.errors import ArgseError


def own_folder(cls: type) -> Path:
    """Where expert ``cls`` keeps its recipe: its ``recipes_dir`` attribute (a plugin's), else argse's experts/."""
    return Path(getattr(cls, "recipes_dir", None) or BUILTIN_RECIPES)


def folders(cls: type, cfg: RunConfig) -> list[Path]:
    """The folders searched for ``cls``'s recipe and presets, first match first."""
    if cfg.recipes_dir and not Path(cfg.recipes_dir).is_dir():
        raise ArgseError(
            f"recipes_dir {cfg.recipes_dir} is not a folder; point it at a folder of <expert>.yaml recipes "
            f"or leave it empty for the experts' own recipes"
        )
    return [Path(cfg.recipes_dir)] * bool(cfg.recipes_dir) + [own_folder(cls)]


def recipe_file(cls: type, cfg: RunConfig) -> Path | None:
    """The ``<name>.yaml`` this run reads for ``cls`` (None: the model's defaults, for a plugin without one).
    A built-in expert always has one: without it argse would train the wrong recipe silently."""
    found = next((f / f"{cls.name}.yaml" for f in folders(cls, cfg) if (f / f"{cls.name}.yaml").is_file()), None)
    if found is None and own_folder(cls) == BUILTIN_RECIPES and cls.__module__.startswith("argse."):
        raise ArgseError(
            f"the built-in recipe {BUILTIN_RECIPES / (cls.name + '.yaml')} is missing; reinstall argse "
            f"(pip install argse, or pip install -e . in a checkout) or restore the file"
        )
    return found


def preset_file(cls: type, cfg: RunConfig, preset: str) -> Path:
    """``presets/<name>.<preset>.yaml``, or one sentence listing the presets there are."""
    dirs = [f / "presets" for f in folders(cls, cfg)]
    found = next((d / f"{cls.name}.{preset}.yaml" for d in dirs if (d / f"{cls.name}.{preset}.yaml").is_file()), None)
    if found is None:
        names = sorted({p.name[len(cls.name) + 1 : -len(".yaml")] for d in dirs for p in d.glob(f"{cls.name}.*.yaml")})
        where = " or ".join(str(d) for d in dirs)
        raise ArgseError(
            f"recipes.{cls.name}.preset: no preset '{preset}' in {where}; available: {', '.join(names) or 'none'}"
        )
    return found


@dataclass
class Layer:
    """One layer of a recipe: its values and what to call it when saying where a value came from."""

    values: dict
    origin: str
    per_key: dict[str, str] = field(default_factory=dict)
    """Dotted key -> a finer origin (which --set), where one layer has several."""


def layers(cls: type, cfg: RunConfig) -> list[Layer]:
    """The recipe's layers above the dataclass defaults; ``config_origin(dotted)`` names where a
    ``recipes.<name>.*`` value of the run config was written (default: 'recipes.<name>')."""
    out = []
    path = recipe_file(cls, cfg)
    if path is not None:
        out.append(Layer(read_yaml(path), str(path)))
    overrides = cfg.recipes.get(cls.name) or {}
    if not isinstance(overrides, dict):
        raise ArgseError(f"config key 'recipes.{cls.name}' must be a mapping of recipe keys, got {overrides!r}")
    overrides = dict(overrides)
    preset = overrides.pop("preset", None)
    if preset is not None:
        out.append(
            Layer(read_yaml(preset_file(cls, cfg, preset)), f"preset {preset} ({preset_file(cls, cfg, preset)})")
        )
    if overrides:
        prefix = f"recipes.{cls.name}"
        per_key = {
            k: cfg.origin(f"{prefix}.{k}") for k in leaves(overrides) if cfg.origin(f"{prefix}.{k}") != "default"
        }
        out.append(Layer(overrides, prefix, per_key))
    return out


def scaled(recipe: Any, layer: dict, where: str, notes: dict[str, str]) -> dict:
    """``layer`` plus the warm-up and milestones of ``recipe`` (the layers below) scaled to the epochs it sets,
    wherever it sets epochs without them; ``notes`` gets 'dotted key -> why' for each scaled value."""
    out = dict(layer)
    for name, value in layer.items():
        below = getattr(recipe, name, None)
        if isinstance(value, dict) and isinstance(below, BaseModel):
            out[name] = scaled(below, value, f"{where}{name}.", notes)
    if hasattr(recipe, "milestones") and "epochs" in layer:
        changes, why = scale_schedule(recipe, layer["epochs"], keep=layer)
        out.update(changes)
        notes.update({f"{where}{k}": v for k, v in why.items()})
    return out


def resolve_recipe(cls: type, cfg: RunConfig) -> tuple[Any, dict[str, str]]:
    """The recipe of expert ``cls`` for run ``cfg`` and, per dotted key, the layer that set it."""
    path = f"recipes.{cls.name}"
    data: dict = {}
    origins: dict[str, str] = {}
    for layer in layers(cls, cfg):
        notes: dict[str, str] = {}
        values = scaled(parse(cls.Recipe, data, path), layer.values, "", notes)
        data = deep_merge(data, values)
        origins.update({k: layer.per_key.get(k, layer.origin) for k in leaves(layer.values)})
        origins.update(notes)
    recipe = parse(cls.Recipe, data, path)
    for key in leaves(recipe.model_dump()):
        origins.setdefault(key, "default")
    say_scaled(cls.name, recipe.model_dump(), origins)
    return recipe, origins


SCALED = re.compile(r"scaled with epochs (\d+) -> (\d+) \(was (.*?)\)")


def say_scaled(name: str, values: dict, origins: dict[str, str]) -> None:
    """One line on stderr when ``name``'s schedule was scaled to other epochs: each value, before and after."""
    groups: dict[tuple[str, str], list[str]] = {}
    for key, origin in origins.items():
        found = SCALED.search(origin)
        if found:
            now = values
            for part in key.split("."):
                now = now[part]
            groups.setdefault((found[1], found[2]), []).append(f"{key} {found[3]} -> {now}")
    parts = [f"{', '.join(changes)} (scaled with epochs {a} -> {b})" for (a, b), changes in groups.items()]
    if parts:
        _say(f"recipe of {name}: {'; '.join(parts)}")


@functools.cache
def _say(line: str) -> None:
    """Each line once per command (a recipe is resolved several times: ids, training, --print-config)."""
    if distributed.rank() == 0:
        print(line, file=sys.stderr)


def load_recipe(cls: type, cfg: RunConfig) -> Any:
    """The recipe of expert ``cls`` for run ``cfg`` (see the module docstring for its layers)."""
    return resolve_recipe(cls, cfg)[0]
