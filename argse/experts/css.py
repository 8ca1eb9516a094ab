"""``css``: the cost-sensitive softmax loss of Mozannar & Sontag (ICML 2020) with an abstain output.

Narasimhan et al. (ICLR 2024), §6 and App. F.3-F.4: the network predicts L + 1 logits, the last one
"abstain", trained with Mozannar & Sontag's Eq. (3) with costs c(i) = 1(y != i) for the classes and
the rejection cost c for abstaining; one model is trained per cost of a grid, and each model gives
one point (rejection rate, error) of the trade-off curve.

With those costs the loss is ``-log p_y - (1 - c) log p_abstain`` (the weight of output i is
max_j c(j) - c(i)). A softmax does not change when the same number is added to every logit, so
the abstain logit is held at 0 and the network outputs the L differences f_y - f_abstain: the
same family of functions as L + 1 free logits, and a plain L-class network. Its exported logits are
those differences, so every reader of ``argse.logits/1`` gets the classes' softmax unchanged, and
the model abstains exactly where its largest exported logit is below 0 (dividing by a positive
temperature keeps that sign).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from argse.experts.base import StandardExpert, register_expert
from argse.training import ExpertRecipe

PAPER_COSTS = (0.0, 0.1, 0.5, 0.75, 0.85, 0.91, 0.95, 0.97, 0.99)
"""The rejection costs Narasimhan et al. (2024, App. F.4) train CSS with, one model each."""


class CSSRecipe(ExpertRecipe):
    selection_fields: ClassVar[frozenset[str]] = frozenset({"costs"})
    cost: float = Field(0.5, ge=0, le=1)
    """c: the cost of abstaining of this model."""
    costs: list[Annotated[float, Field(ge=0, le=1)]] = Field(list(PAPER_COSTS), min_length=1)
    """The grid ``argse.table2`` trains, one run per cost (each sets ``cost``); default: the paper's."""


def with_abstain(margins: torch.Tensor) -> torch.Tensor:
    """The L + 1 logits [f_y - f_abstain, 0] of the L exported ones."""
    return torch.cat([margins, margins.new_zeros(len(margins), 1)], dim=1)


def css_loss(margins: torch.Tensor, targets: torch.Tensor, cost: float) -> torch.Tensor:
    """Mozannar & Sontag (2020), Eq. (3) with c(i) = 1(y != i), c(L + 1) = cost: -log p_y - (1 - cost) log p_abstain."""
    logp = F.log_softmax(with_abstain(margins), dim=1)
    return -(logp.gather(1, targets[:, None]).squeeze(1) + (1 - cost) * logp[:, -1]).mean()


def css_abstains(margins: torch.Tensor) -> torch.Tensor:
    """True where the abstain output wins: every class logit (relative to the abstain one) is below 0."""
    return margins.max(dim=1).values < 0


@register_expert("css")
class CSSExpert(StandardExpert):
    """Cost-sensitive softmax with an abstain output (Mozannar & Sontag 2020), at the recipe's cost."""

    Recipe = CSSRecipe

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return css_loss(logits, targets, self.recipe.cost)
