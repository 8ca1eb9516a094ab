"""``group_dro``: group DRO over the head/tail groups with a logit-adjusted inner loss (Chow [DRO]).

Narasimhan et al. (ICLR 2024), App. F.3: the base model of Chow [DRO] is trained with the group DRO
of Sagawa et al. (ICLR 2020), as Jones et al. (ICLR 2021) prescribe, with the inner weighted
minimisation done by a logit-adjusted loss (Narasimhan & Menon 2021; Wang et al. 2023) rather than
by multiplying losses by weights. Every step, each group's mean balanced (logit-adjusted) loss on
the batch, plus Sagawa et al.'s generalisation adjustment C / sqrt(n_g), raises that group's weight
q_g by exponentiated gradient ascent; the model then descends the logit-adjusted loss with the
weights folded into the margins, CE(f + tau log pi_y - log q_[y]), whose minimiser predicts
argmax_y q_[y] eta_y / pi_y: the balanced classifier with each group weighted by q. With q uniform
it is exactly ``logit_adjust``'s loss. The groups are the run's head/tail (``data.tail_max_count``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from argse.experts.base import StandardExpert, register_expert
from argse.training import ExpertRecipe


class GroupDRORecipe(ExpertRecipe):
    dro_step: float = Field(0.001, gt=0)
    """eta: step size of the exponentiated-gradient update of the group weights (paper's grid: 0.0005, 0.001)."""
    dro_adjustment: float = Field(1.0, ge=0)
    """C: each group's loss gets C / sqrt(n_g) in the weight update (paper's grid: 1.0, 2.0)."""
    tau: float = Field(1.0, ge=0)
    """Scale of the log-prior in the inner logit-adjusted loss."""


def group_losses(per_sample: torch.Tensor, groups: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of ``per_sample`` over the samples of each of ``k`` groups; 0 for a group absent from the batch."""
    sums = torch.zeros(k, device=per_sample.device, dtype=per_sample.dtype).index_add(0, groups, per_sample)
    counts = torch.bincount(groups, minlength=k).to(per_sample.dtype)
    return sums / counts.clamp(min=1)


def dro_update(q: torch.Tensor, losses: torch.Tensor, adjustment: torch.Tensor, step: float) -> torch.Tensor:
    """Sagawa et al. (2020), Algorithm 1: q_g <- q_g exp(eta (loss_g + C / sqrt(n_g))), renormalised."""
    q = q * torch.exp(step * (losses + adjustment))
    return q / q.sum()


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

    q' comes from the groups' mean logit-adjusted losses; the loss is CE(logits + tau log pi - log q'_[y]).
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
        sizes = torch.zeros(groups.k, dtype=torch.float64).index_add(0, groups.of_class, counts.double())
        # a group without training images never appears in a batch; its adjustment is irrelevant
        self.adjustment = (recipe.dro_adjustment / sizes.clamp(min=1).sqrt()).float().to(ctx.device)
        # uniform start (Sagawa et al.); kept in place so a captured training step sees the updates.
        # Not checkpointed: a continued training restarts the weights from uniform.
        self.q = torch.full((groups.k,), 1.0 / groups.k, device=ctx.device)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        r = self.recipe
        loss, q = group_dro_loss(
            logits, targets, self.ctx.log_prior, self.class_group, self.q, self.adjustment, r.dro_step, r.tau
        )
        self.q.copy_(q)
        return loss
