"""``group_dro``: group DRO over the head/tail groups with a logit-adjusted inner loss (Chow [DRO]).

Narasimhan et al. (ICLR 2024), App. F.3: the base model of Chow [DRO] is trained with the group DRO
of Sagawa et al. (ICLR 2020), as Jones et al. (ICLR 2021) prescribe, with the inner weighted
minimisation done by a logit-adjusted loss (Narasimhan & Menon 2021; Wang et al. 2023) rather than
by multiplying losses by weights.

The objective is the paper's worst-group error (Eq. 5), max_k P(error | y in G_k): each group's
error is conditional on the group, so its classes count by their share of the group and the group
by 1 / pi_G, where pi_G is the group's prior (not each class's). Every step, each group's mean
group-adjusted loss on the batch, plus Sagawa et al.'s generalisation adjustment C / sqrt(n_g),
raises that group's weight q_g by exponentiated gradient ascent; the model then descends
CE(f + tau log pi_G[y] - log q_[y]), whose minimiser predicts argmax_y q_[y] eta_y / pi_G[y]: the
Bayes classifier of sum_k q_k P(error | y in G_k). The groups are the run's head/tail
(``data.tail_max_count``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from argse.core.distributed import all_sum
from argse.experts.base import StandardExpert, register_expert
from argse.training import ExpertRecipe


class GroupDRORecipe(ExpertRecipe):
    dro_step: float = Field(0.001, gt=0)
    """eta: step size of the exponentiated-gradient update of the group weights (paper's grid: 0.0005, 0.001)."""
    dro_adjustment: float = Field(1.0, ge=0)
    """C: each group's loss gets C / sqrt(n_g) in the weight update (paper's grid: 1.0, 2.0)."""
    tau: float = Field(1.0, ge=0)
    """Scale of the log prior in the inner logit-adjusted loss."""
    selection_fields: ClassVar[frozenset[str]] = frozenset({"grid_steps", "grid_adjustments"})
    grid_steps: list[Annotated[float, Field(gt=0)]] = Field([0.0005, 0.001], min_length=1)
    """The eta that argse.table2 tries (App. F.3): one model per (eta, C) pair, picked on ``val``."""
    grid_adjustments: list[Annotated[float, Field(ge=0)]] = Field([1.0, 2.0], min_length=1)
    """The C that argse.table2 tries with every eta of ``grid_steps``."""
    inner_prior: Literal["group", "class"] = "group"
    """The prior the inner loss adjusts by: ``group`` (pi_G[y]: the paper's group-conditional worst-group
    error, Eq. 5) or ``class`` (pi_y: each class weighted equally within its group, argse before 2026-12)."""


def group_losses(
    per_sample: torch.Tensor, groups: torch.Tensor, k: int, total: Callable[[torch.Tensor], torch.Tensor] = all_sum
) -> torch.Tensor:
    """Mean of ``per_sample`` over the samples of each of ``k`` groups; 0 for a group absent from the batch. Sums
    and counts are ``total``-ed over the processes first, so under torchrun every rank gets the whole batch's means
    (and the same q)."""
    sums = torch.zeros(k, device=per_sample.device, dtype=per_sample.dtype).index_add(0, groups, per_sample)
    counts = torch.bincount(groups, minlength=k).to(per_sample.dtype)
    sums, counts = total(torch.stack([sums, counts]))
    return sums / counts.clamp(min=1)


def dro_update(q: torch.Tensor, losses: torch.Tensor, adjustment: torch.Tensor, step: float) -> torch.Tensor:
    """Sagawa et al. (2020), Algorithm 1: q_g <- q_g exp(eta (loss_g + C / sqrt(n_g))), renormalised."""
    q = q * torch.exp(step * (losses + adjustment))
    return q / q.sum()


def group_sizes(of_class: torch.Tensor, class_counts: torch.Tensor, k: int) -> torch.Tensor:
    """The number of training images of each of the ``k`` groups (float64)."""
    return torch.zeros(k, dtype=torch.float64).index_add(0, of_class, class_counts.double())


def group_log_prior(of_class: torch.Tensor, class_counts: torch.Tensor, k: int) -> torch.Tensor:
    """Per class, the log of its group's share of the training set: log pi_G[y]."""
    sizes = group_sizes(of_class, class_counts, k)
    return (sizes / sizes.sum()).log()[of_class].float()


def group_dro_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    log_pi: torch.Tensor,
    class_group: torch.Tensor,
    q: torch.Tensor,
    adjustment: torch.Tensor,
    step: float,
    tau: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss the model descends, the updated group weights q').

    ``log_pi`` is per class (the group_dro expert gives each class its group's log prior). q' comes from
    the groups' mean adjusted losses; the loss is CE(logits + tau log pi - log q'_[y]).
    """
    balanced = logits + tau * log_pi
    per_sample = F.cross_entropy(balanced, targets, reduction="none")
    losses = group_losses(per_sample.detach(), class_group[targets], len(q))
    q = dro_update(q, losses, adjustment, step)
    return F.cross_entropy(balanced - q.log()[class_group], targets), q


@register_expert("group_dro")
class GroupDROExpert(StandardExpert):
    """Group DRO over head/tail with a logit-adjusted inner loss (Sagawa et al. 2020; Narasimhan et al. 2024)."""

    Recipe = GroupDRORecipe

    def __init__(self, ctx, recipe: GroupDRORecipe) -> None:
        super().__init__(ctx, recipe)
        groups, counts = ctx.data.groups, ctx.data.class_counts
        self.class_group = groups.of_class.to(ctx.device)
        by_group = recipe.inner_prior == "group"
        self.log_pi = group_log_prior(groups.of_class, counts, groups.k).to(ctx.device) if by_group else ctx.log_prior
        sizes = group_sizes(groups.of_class, counts, groups.k)
        # a group without training images never appears in a batch; its adjustment is irrelevant
        self.adjustment = (recipe.dro_adjustment / sizes.clamp(min=1).sqrt()).float().to(ctx.device)
        # uniform start (Sagawa et al.); updated in place so a captured training step sees the updates, and
        # checkpointed with the training state (loss_state), so a continued training goes on from them
        self.q = torch.full((groups.k,), 1.0 / groups.k, device=ctx.device)

    def loss_state(self) -> dict[str, torch.Tensor]:
        return {"dro_q": self.q}

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        r = self.recipe
        loss, q = group_dro_loss(
            logits, targets, self.log_pi, self.class_group, self.q, self.adjustment, r.dro_step, r.tau
        )
        self.q.copy_(q)
        return loss
