"""``logit_adjust``: the logit-adjusted loss of Menon et al. (ICLR 2021)."""

from dataclasses import dataclass

import torch

from argse.experts.base import StandardExpert, register_expert
from argse.experts.losses import logit_adjusted_loss
from argse.training import ExpertRecipe


@dataclass
class LogitAdjustRecipe(ExpertRecipe):
    tau: float = 1.0
    """Scale of the log-prior added to the logits during training."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tau < 0:
            raise ValueError(f"tau must be >= 0 (1 in Menon et al.), got {self.tau}")


@register_expert("logit_adjust")
class LogitAdjustExpert(StandardExpert):
    """Logit-adjusted cross-entropy (Menon et al. 2021): CE on logits + tau * log prior."""

    Recipe = LogitAdjustRecipe

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logit_adjusted_loss(logits, targets, self.ctx.log_prior, self.recipe.tau)
