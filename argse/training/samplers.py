"""Samplers: which training images an epoch visits, and in what order.

A sampler is a function ``(labels, generator, num_classes, draws) -> indices`` registered under a
name; ``TrainRecipe.sampler`` picks one by that name. Plugins add samplers with
``@register_sampler("name")`` exactly as they add experts (entry-point group ``argse.samplers``),
without editing argse.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from argse.core.errors import ArgseError
from argse.core.registry import Registry

Sampler = Callable[[torch.Tensor, torch.Generator, int, int], torch.Tensor]
"""(labels, generator, num_classes, draws) -> ``draws`` indices into ``labels``."""

SAMPLERS: Registry[Sampler] = Registry("sampler", "argse.samplers")

register_sampler = SAMPLERS.register
"""Function decorator: add a sampler under ``name``; the function is returned unchanged."""
get_sampler = SAMPLERS.get
list_samplers = SAMPLERS.names


def epoch_order(
    labels: torch.Tensor, sampler: str, generator: torch.Generator, num_classes: int, draws: int | None = None
) -> torch.Tensor:
    """Indices of one epoch from the sampler named ``sampler``; ``draws`` defaults to one per sample. What a
    (plugin) sampler returns is checked here, so a wrong answer is one sentence naming it, not an indexing
    traceback deep in the loop."""
    draws = draws or len(labels)
    order = get_sampler(sampler)(labels, generator, num_classes, draws)
    n = len(labels)
    if not torch.is_tensor(order) or order.dim() != 1 or order.is_floating_point() or order.is_complex():
        got = f"a {order.dim()}-D {order.dtype} tensor" if torch.is_tensor(order) else type(order).__name__
        raise ArgseError(f"sampler '{sampler}' returned {got}; a sampler returns a 1-D integer tensor of indices")
    if len(order) != draws:
        raise ArgseError(f"sampler '{sampler}' returned {len(order)} indices for {draws} draws; return exactly draws")
    if len(order) and (int(order.min()) < 0 or int(order.max()) >= n):
        bad = int(order.min()) if int(order.min()) < 0 else int(order.max())
        raise ArgseError(f"sampler '{sampler}' returned index {bad}, outside the {n} training samples [0, {n - 1}]")
    return order


@register_sampler("instance")
def instance_sampler(labels: torch.Tensor, generator: torch.Generator, num_classes: int, draws: int) -> torch.Tensor:
    """A shuffled pass over the data (cut to ``draws``)."""
    return torch.randperm(len(labels), generator=generator)[:draws]


@register_sampler("balanced")
def balanced_sampler(labels: torch.Tensor, generator: torch.Generator, num_classes: int, draws: int) -> torch.Tensor:
    """Class-balanced draws with replacement: weight 1 / n_y per sample, so every class is equally likely."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    return torch.multinomial(1.0 / counts[labels], draws, replacement=True, generator=generator)
