"""``posthoc_adjust``: Menon et al.'s (ICLR 2021) post-hoc logit adjustment of another expert.

The source's calibrated logits minus tau * log(training prior), with tau picked on ``val`` by
balanced accuracy: a distinct, balanced expert for the cost of one pass over exported logits.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from argse.data.logits import LogitsFile
from argse.data.metrics import balanced_accuracy
from argse.experts.base import register_expert
from argse.experts.derived import DerivedRecipe, LogitsExpert
from argse.experts.losses import log_prior, posthoc_logit_adjust


class PosthocRecipe(DerivedRecipe):
    tau_grid: list[Annotated[float, Field(ge=0)]] = Field([round(0.1 * i, 1) for i in range(31)], min_length=1)
    """Candidates for tau (Menon et al. use tau = 1); the best balanced accuracy on val wins,
    ties going to the candidate nearest 1."""


@register_expert("posthoc_adjust")
class PosthocAdjustExpert(LogitsExpert):
    """Post-hoc logit adjustment (Menon et al. 2021) of another expert's logits, tau picked on val."""

    Recipe = PosthocRecipe

    def adjust(self, calibrated: torch.Tensor, class_counts: list[int], tau: float | None = None) -> torch.Tensor:
        tau = self.fitted["tau"] if tau is None else tau
        log_pi = log_prior(torch.tensor(class_counts, device=calibrated.device))
        return posthoc_logit_adjust(calibrated, log_pi, tau)

    def fit(self, val: LogitsFile) -> dict:
        grid = self.recipe.tau_grid
        scores = {
            tau: balanced_accuracy(self.adjust(val.calibrated, val.class_counts, tau), val.labels) for tau in grid
        }
        tau = max(scores, key=lambda t: (scores[t], -abs(t - 1.0)))
        return {"tau": tau, "val_balanced_acc": scores[tau]}
