"""``logit_adjust``: the logit-adjusted loss of Menon et al. (ICLR 2021)."""

import torch
from pydantic import Field

from argse.experts.base import StandardExpert, register_expert
from argse.experts.losses import logit_adjusted_loss
from argse.training import ExpertRecipe


class LogitAdjustRecipe(ExpertRecipe):
    tau: float = Field(1.0, ge=0)
    """Scale of the log-prior added to the logits during training."""


@register_expert("logit_adjust")
class LogitAdjustExpert(StandardExpert):
    """Logit-adjusted cross-entropy (Menon et al. 2021): CE on logits + tau * log prior."""

    Recipe = LogitAdjustRecipe

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logit_adjusted_loss(logits, targets, self.ctx.log_prior, self.recipe.tau)
