"""The expert registry: expert classes by name (``argse.registry.Registry``, entry-point group ``argse.experts``)."""

from __future__ import annotations

from argse.registry import Registry, load_plugins

EXPERTS: Registry[type] = Registry("expert", "argse.experts")

register_expert = EXPERTS.register
"""Class decorator: add an expert under ``name``; the class is returned unchanged (``name`` set)."""
get_expert = EXPERTS.get
list_experts = EXPERTS.names

__all__ = ["EXPERTS", "get_expert", "list_experts", "load_plugins", "register_expert"]
