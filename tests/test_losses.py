import math

import torch
import torch.nn.functional as F

from argse.experts.losses import balanced_softmax_loss, log_prior, logit_adjusted_loss, posthoc_logit_adjust


def test_logit_adjusted_loss_by_hand():
    # Two classes with prior (0.8, 0.2), tau = 2, logits (1, 0), label 1:
    # adjusted logits = (1 + 2 ln 0.8, 0 + 2 ln 0.2); loss = -log softmax_1.
    logits, y = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    lp = log_prior(torch.tensor([80, 20]))
    a, b = 1 + 2 * math.log(0.8), 2 * math.log(0.2)
    expected = -(b - math.log(math.exp(a) + math.exp(b)))
    assert abs(float(logit_adjusted_loss(logits, y, lp, tau=2.0)) - expected) < 1e-5


def test_logit_adjust_with_tau_zero_is_cross_entropy():
    logits, y = torch.randn(7, 5), torch.randint(0, 5, (7,))
    lp = log_prior(torch.tensor([50, 20, 10, 5, 1]))
    assert torch.allclose(logit_adjusted_loss(logits, y, lp, tau=0.0), F.cross_entropy(logits, y))


def test_balanced_softmax_is_ce_on_prior_shifted_logits():
    counts = torch.tensor([500.0, 50.0, 5.0])
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    # Ren et al.: p_y = n_y exp(z_y) / sum_j n_j exp(z_j); here written out with counts, not the prior.
    weighted = counts * logits.exp()
    expected = -(weighted[torch.arange(6), y] / weighted.sum(1)).log().mean()
    assert torch.allclose(balanced_softmax_loss(logits, y, log_prior(counts)), expected, atol=1e-5)


def test_posthoc_adjustment_by_hand():
    lp = log_prior(torch.tensor([3, 1]))  # ln 0.75, ln 0.25
    out = posthoc_logit_adjust(torch.tensor([[0.0, 0.0]]), lp, tau=1.0)
    assert torch.allclose(out, torch.tensor([[-math.log(0.75), -math.log(0.25)]]))
    assert int(out.argmax()) == 1  # a tie goes to the rarer class
