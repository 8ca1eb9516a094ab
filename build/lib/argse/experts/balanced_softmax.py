"""``balanced_softmax``: Balanced Softmax of Ren et al. (NeurIPS 2020)."""

import torch

from argse.experts.base import StandardExpert, register_expert
from argse.experts.losses import balanced_softmax_loss


@register_expert("balanced_softmax")
class BalancedSoftmaxExpert(StandardExpert):
    """Balanced Softmax (Ren et al. 2020): softmax weighted by the training class counts."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return balanced_softmax_loss(logits, targets, self.ctx.log_prior)
