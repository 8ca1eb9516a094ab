"""argse.core.registry.Registry: the one registry class behind experts, samplers, rejectors and datasets."""

from __future__ import annotations

import importlib.metadata

import pytest

import argse.core.registry
from argse.core.errors import ArgseError
from argse.core.registry import GROUPS, Registry, RegistryError, load_plugins

WIDGETS: Registry = Registry("widget", "argse.test_widgets")


@WIDGETS.register("round")
def round_widget() -> str:
    return "round"


def test_get_names_and_unknown_name_lists_the_choices():
    assert WIDGETS.get("round") is round_widget and WIDGETS.names() == ["round"] and "round" in WIDGETS
    with pytest.raises(RegistryError, match=r"^unknown widget 'square'; available widgets: round$"):
        WIDGETS.get("square")


def test_duplicate_names_both_places_and_the_same_object_may_register_again():
    assert WIDGETS.register("round")(round_widget) is round_widget  # a module imported twice

    with pytest.raises(
        RegistryError,
        match=r"^widget 'round' is registered twice: by (tests\.)?test_registry\.round_widget \(.*test_registry\.py\) "
        r"and by (tests\.)?test_registry\..*other_round \(.*test_registry\.py\); rename one of them$",
    ):

        @WIDGETS.register("round")
        def other_round() -> str:
            return "also round"

    assert issubclass(RegistryError, ArgseError) and issubclass(RegistryError, ValueError)  # configs report where


def test_a_class_gets_its_name_and_unregister_forgets_it():
    @WIDGETS.register("boxed")
    class Boxed:
        pass

    assert Boxed.name == "boxed" and "boxed" in WIDGETS
    WIDGETS.unregister("boxed")
    assert "boxed" not in WIDGETS


def test_load_plugins_reads_every_argse_group_and_every_registry_group(monkeypatch):
    seen = []
    monkeypatch.setattr(argse.core.registry, "entry_points", lambda group: seen.append(group) or [])
    load_plugins([])
    assert set(GROUPS) == {"argse.experts", "argse.samplers", "argse.rejectors", "argse.datasets"}
    assert set(GROUPS) | {"argse.test_widgets"} <= set(seen) and len(seen) == len(set(seen))


def test_a_broken_entry_point_is_one_sentence(monkeypatch):
    ep = importlib.metadata.EntryPoint("broken", "nope.not_a_module", "argse.datasets")
    monkeypatch.setattr(argse.core.registry, "entry_points", lambda group: [ep] if group == "argse.datasets" else [])
    with pytest.raises(
        ArgseError, match=r"^entry point 'broken = nope.not_a_module' of group argse.datasets failed to import \("
    ):
        load_plugins([])
