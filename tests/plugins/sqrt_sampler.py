"""A third-party sampler, registered without touching argse: square-root sampling.

Each class is drawn with probability proportional to sqrt(n_y) (Mahajan et al. 2018), between
instance sampling (n_y) and class-balanced sampling (1). The tests count its calls.
"""

import torch

from argse.experts import register_sampler

CALLS: list[int] = []


@register_sampler("sqrt")
def sqrt_sampler(labels: torch.Tensor, generator: torch.Generator, num_classes: int, draws: int) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=num_classes).double()
    CALLS.append(draws)
    return torch.multinomial(counts[labels].rsqrt(), draws, replacement=True, generator=generator)
