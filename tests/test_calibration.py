import pytest
import torch

from argse.calibration import T_MIN, fit_temperature
from argse.metrics import ece


def test_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 5, generator=g) * 2
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=g).squeeze(1)
    t = fit_temperature(true_logits * 3.0, labels)  # over-confident by a factor 3
    assert abs(t - 3.0) < 0.25


def test_separable_split_hits_the_lower_bound_not_zero():
    logits = torch.eye(3).repeat(5, 1)  # every sample right, by a margin of 1
    labels = torch.arange(3).repeat(5)
    assert fit_temperature(logits, labels) == pytest.approx(T_MIN)


def test_ece_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = torch.tensor([0, 1, 1, 1])
    # bins (15 equal): 0.9 -> bin 13 (acc 1), 0.6 -> bin 9 (acc 0), 0.7 -> bin 10 (acc 1), 0.8 -> bin 12 (acc 1)
    expected = (abs(1 - 0.9) + abs(0 - 0.6) + abs(1 - 0.7) + abs(1 - 0.8)) / 4
    assert abs(ece(probs, labels) - expected) < 1e-6
