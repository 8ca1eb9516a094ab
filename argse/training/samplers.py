"""Samplers: which training images an epoch visits, and in what order.

A sampler is a function ``(labels, generator, num_classes, draws) -> indices`` registered under a
name; ``TrainRecipe.sampler`` picks one by that name. Plugins add samplers with
``@register_sampler("name")`` exactly as they add experts, without editing argse.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from argse.errors import ArgseError

Sampler = Callable[[torch.Tensor, torch.Generator, int, int], torch.Tensor]
"""(labels, generator, num_classes, draws) -> ``draws`` indices into ``labels``."""

_SAMPLERS: dict[str, Sampler] = {}


class SamplerError(ArgseError, ValueError):
    """An unknown or doubly registered sampler: one sentence, and a ValueError so configs report where."""


def register_sampler(name: str) -> Callable[[Sampler], Sampler]:
    """Function decorator: add a sampler under ``name``; the function is returned unchanged."""

    def decorator(fn: Sampler) -> Sampler:
        if _SAMPLERS.get(name, fn) is not fn:
            old = _SAMPLERS[name]
            raise SamplerError(
                f"sampler '{name}' is registered twice: by {old.__module__}.{old.__qualname__} "
                f"and by {fn.__module__}.{fn.__qualname__}; rename one of them"
            )
        _SAMPLERS[name] = fn
        return fn

    return decorator


def list_samplers() -> list[str]:
    return sorted(_SAMPLERS)


def get_sampler(name: str) -> Sampler:
    try:
        return _SAMPLERS[name]
    except KeyError:
        raise SamplerError(f"unknown sampler '{name}'; available samplers: {', '.join(list_samplers())}") from None


def epoch_order(
    labels: torch.Tensor, sampler: str, generator: torch.Generator, num_classes: int, draws: int | None = None
) -> torch.Tensor:
    """Indices of one epoch from the sampler named ``sampler``; ``draws`` defaults to one per sample."""
    return get_sampler(sampler)(labels, generator, num_classes, draws or len(labels))


@register_sampler("instance")
def instance_sampler(labels: torch.Tensor, generator: torch.Generator, num_classes: int, draws: int) -> torch.Tensor:
    """A shuffled pass over the data (cut to ``draws``)."""
    return torch.randperm(len(labels), generator=generator)[:draws]


@register_sampler("balanced")
def balanced_sampler(labels: torch.Tensor, generator: torch.Generator, num_classes: int, draws: int) -> torch.Tensor:
    """Class-balanced draws with replacement: weight 1 / n_y per sample, so every class is equally likely."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    return torch.multinomial(1.0 / counts[labels], draws, replacement=True, generator=generator)
