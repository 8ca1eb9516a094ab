"""Experts: the registry, the protocol, and the built-in experts (registered on import)."""

from argse.experts.base import Expert, ExpertContext, StandardExpert, load_recipe
from argse.experts.registry import get_expert, list_experts, load_plugins, register_expert

# Built-in experts register themselves on import.
from argse.experts import balanced_softmax, ce, decoupling, logit_adjust  # noqa: E402, F401  isort: skip

__all__ = [
    "Expert",
    "ExpertContext",
    "StandardExpert",
    "get_expert",
    "list_experts",
    "load_plugins",
    "load_recipe",
    "register_expert",
]
