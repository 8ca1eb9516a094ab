"""Temperature scaling (Guo et al. 2017), fit by NLL on a held-out split."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from argse.data.logits import T_MAX, T_MIN

# Bounds on T (argse.data.logits.T_MIN, T_MAX). NLL is convex in 1/T, so clamping gives the constrained optimum; without a bound a
# split that the model classifies perfectly drives T to 0 and the posteriors to one-hot.


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100, weight: torch.Tensor | None = None
) -> float:
    """The T in [T_MIN, T_MAX] minimising NLL of softmax(logits / T), by L-BFGS over log(1/T); with ``weight``, the
    NLL of each sample weighted (e.g. by pi_train(y) / pi_split(y), the evaluation's training prior)."""
    logits = logits.double()
    w = None if weight is None else weight.double() / weight.double().sum()
    lo, hi = -math.log(T_MAX), -math.log(T_MIN)
    log_beta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_beta], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        scaled = logits * log_beta.clamp(lo, hi).exp()
        if w is None:
            loss = F.cross_entropy(scaled, labels)
        else:
            loss = (F.cross_entropy(scaled, labels, reduction="none") * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float(1.0 / log_beta.detach().clamp(lo, hi).exp())
