"""Long-tail losses and adjustments as small pure functions of logits and the class prior."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def log_prior(class_counts: torch.Tensor) -> torch.Tensor:
    """log pi_y of the training label distribution."""
    counts = class_counts.double()
    return (counts / counts.sum()).log().float()


def logit_adjusted_loss(
    logits: torch.Tensor, targets: torch.Tensor, log_pi: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """Menon et al. 2021, eq. (10): cross-entropy of logits + tau * log pi."""
    return F.cross_entropy(logits + tau * log_pi, targets)


def balanced_softmax_loss(logits: torch.Tensor, targets: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
    """Ren et al. 2020: softmax with each exp(logit) weighted by the class count n_y.

    Weighting by n_y or by pi_y = n_y / n gives the same softmax, so this is CE on logits + log pi.
    """
    return F.cross_entropy(logits + log_pi, targets)


def posthoc_logit_adjust(logits: torch.Tensor, log_pi: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Menon et al. 2021, eq. (9): argmax of logits - tau * log pi approximates the balanced-error optimum."""
    return logits - tau * log_pi
