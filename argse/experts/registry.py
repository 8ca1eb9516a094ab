"""The expert registry: one dict, a decorator, and plugin discovery."""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points

from argse.errors import ArgseError

ENTRY_POINT_GROUP = "argse.experts"
_EXPERTS: dict[str, type] = {}


def _where(cls: type) -> str:
    try:
        return f"{cls.__module__}.{cls.__qualname__} ({inspect.getsourcefile(cls)})"
    except TypeError:
        return f"{cls.__module__}.{cls.__qualname__}"


class DuplicateExpertError(ArgseError, ValueError):
    """A name registered twice: a user error (one sentence), and a ValueError as before."""


def register_expert(name: str):
    """Class decorator: add an expert under ``name``; the class is returned unchanged (``name`` set)."""

    def decorator(cls: type) -> type:
        if name in _EXPERTS and _EXPERTS[name] is not cls:
            raise DuplicateExpertError(
                f"expert '{name}' is registered twice: by {_where(_EXPERTS[name])} and by {_where(cls)}; "
                f"rename one of them"
            )
        cls.name = name
        _EXPERTS[name] = cls
        return cls

    return decorator


def list_experts() -> list[str]:
    return sorted(_EXPERTS)


def get_expert(name: str) -> type:
    try:
        return _EXPERTS[name]
    except KeyError:
        raise ArgseError(f"unknown expert '{name}'; available experts: {', '.join(list_experts())}") from None


def load_plugins(modules: list[str] = ()) -> None:
    """Import plugin modules from the config, then every ``argse.experts`` entry point."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ArgseError(
                f"plugin module '{module}' could not be imported ({exc}); fix 'plugins' in the config"
            ) from None
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except ImportError as exc:
            raise ArgseError(
                f"entry point '{ep.name} = {ep.value}' of group {ENTRY_POINT_GROUP} failed to import ({exc})"
            ) from None
