"""One small registry class for everything a plugin adds: experts, samplers, rejectors and datasets.

A registry is a dict of names and a decorator that returns what it registers unchanged
(torchvision's ``register_model``). A duplicate name is an error naming both places; an unknown
name is an error listing the choices. Plugins register by being imported: a module named in the
config's ``plugins``, or an entry point of the registry's group (``argse.experts``,
``argse.samplers``, ``argse.rejectors``, ``argse.datasets``), all loaded by :func:`load_plugins`.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from argse.core.errors import ArgseError

T = TypeVar("T")

GROUPS = ("argse.experts", "argse.samplers", "argse.rejectors", "argse.datasets")
"""The entry-point groups of argse's own registries, loaded even before their modules are imported."""


class RegistryError(ArgseError, ValueError):
    """An unknown or doubly registered name: one sentence, and a ValueError so configs report where."""


def where(obj: object) -> str:
    """``module.qualname (file)`` of a registered class or function, for messages."""
    name = f"{obj.__module__}.{getattr(obj, '__qualname__', obj)}"
    try:
        return f"{name} ({inspect.getsourcefile(obj)})"
    except TypeError:
        return name


class Registry(Generic[T]):
    """Names of one kind (``kind``: "expert", "sampler", ...) and the entry-point group plugins use."""

    all: list[Registry] = []  # every registry, so load_plugins reaches each group

    def __init__(self, kind: str, group: str) -> None:
        self.kind, self.group = kind, group
        self._items: dict[str, T] = {}
        Registry.all.append(self)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: add ``obj`` under ``name`` (a class also gets ``name`` as an attribute)."""

        def decorator(obj: T) -> T:
            old = self._items.get(name, obj)
            if old is not obj:
                raise RegistryError(
                    f"{self.kind} '{name}' is registered twice: by {where(old)} and by {where(obj)}; rename one of them"
                )
            if isinstance(obj, type):
                obj.name = name
            self._items[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise RegistryError(
                f"unknown {self.kind} '{name}'; available {self.kind}s: {', '.join(self.names())}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests that register a plugin more than once)."""
        self._items.pop(name, None)


# An absolute dotted module name: importlib refuses a relative one ('.rel') with a TypeError, and a path is no module.
MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def load_plugins(modules: list[str] = ()) -> None:
    """Import the config's plugin modules, then every entry point of every registry's group."""
    for module in modules:
        if not MODULE_NAME.fullmatch(module):
            raise ArgseError(
                f"'plugins' names {module!r}, which is no module name; give absolute dotted names such as mypkg.focal"
            )
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001  (a plugin's own error at import: a SyntaxError, a RuntimeError, ...)
            raise ArgseError(
                f"plugin module '{module}' could not be imported ({type(exc).__name__}: {exc}); fix it or its "
                f"entry in 'plugins'"
            ) from None
    for group in dict.fromkeys([*GROUPS, *(registry.group for registry in Registry.all)]):
        for ep in entry_points(group=group):
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001  (whatever the plugin raises at import)
                raise ArgseError(
                    f"entry point '{ep.name} = {ep.value}' of group {group} failed to import "
                    f"({type(exc).__name__}: {exc})"
                ) from None
