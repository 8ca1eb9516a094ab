"""A third-party expert, registered without touching argse: label-smoothed CE."""

import torch
import torch.nn.functional as F

from argse.experts import StandardExpert, TrainRecipe, register_expert


class SmoothRecipe(TrainRecipe):
    smoothing: float = 0.1


@register_expert("label_smoothing")
class LabelSmoothingExpert(StandardExpert):
    """Cross-entropy with label smoothing (a plugin used by the tests)."""

    Recipe = SmoothRecipe

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.recipe.smoothing)
