"""Experts: the registry, the protocol, the built-in experts, and everything a plugin needs.

A plugin imports only from here: ``register_expert`` and ``StandardExpert`` (or the ``Expert``
protocol) for an expert, ``ExpertRecipe`` (a ``TrainRecipe`` with the expert's own seed) for its
recipe, ``LogitsExpert`` and ``DerivedRecipe`` for an expert computed from another's logits,
``register_sampler`` for a sampler, the loss helpers for its loss, ``build_expert`` to build any
registered expert for a run.
"""

from argse.experts.base import (
    Expert,
    ExpertContext,
    Exported,
    StandardExpert,
    build_expert,
    get_expert,
    inference_model,
    list_experts,
    load_plugins,
    load_recipe,
    register_expert,
)
from argse.experts.derived import DerivedRecipe, LogitsExpert
from argse.experts.losses import balanced_softmax_loss, log_prior, logit_adjusted_loss, posthoc_logit_adjust
from argse.training import ExpertRecipe, TrainRecipe, TrainTask, get_sampler, list_samplers, register_sampler

# Built-in experts register themselves on import.
from argse.experts import balanced_softmax, ce, css, decoupling, group_dro, logit_adjust, posthoc_adjust  # noqa: E402, F401  isort: skip

__all__ = [
    "Expert",
    "ExpertContext",
    "Exported",
    "ExpertRecipe",
    "LogitsExpert",
    "DerivedRecipe",
    "StandardExpert",
    "TrainRecipe",
    "TrainTask",
    "balanced_softmax_loss",
    "build_expert",
    "get_expert",
    "get_sampler",
    "inference_model",
    "list_experts",
    "list_samplers",
    "load_plugins",
    "load_recipe",
    "log_prior",
    "logit_adjusted_loss",
    "posthoc_logit_adjust",
    "register_expert",
    "register_sampler",
]
