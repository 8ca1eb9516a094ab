"""A third-party expert with its own classifier head (a scaled cosine classifier), registered without
touching argse: it trains, exports and predicts through the expert protocol alone."""

import torch
import torch.nn.functional as F
from torch import nn

from argse.experts import StandardExpert, register_expert


class CosineClassifier(nn.Module):
    """logits = s * cos(feature, w_c), with a learned scale s."""

    def __init__(self, fc: nn.Linear) -> None:
        super().__init__()
        self.weight = nn.Parameter(fc.weight.detach().clone())
        self.scale = nn.Parameter(torch.tensor(10.0, device=fc.weight.device))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).t()


@register_expert("cosine_head")
class CosineHeadExpert(StandardExpert):
    """Cross-entropy on a cosine classifier (a plugin used by the tests)."""

    def new_model(self, dropout: float = 0.0) -> nn.Module:
        model = super().new_model(dropout)
        model.fc = CosineClassifier(model.fc)
        return model

    @classmethod
    def inference_head(cls, model: nn.Module, meta: dict) -> None:
        model.fc = CosineClassifier(model.fc)
