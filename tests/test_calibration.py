import pytest
import torch
import torch.nn.functional as F

from argse.data.metrics import ece
from argse.experts.calibration import T_MAX, T_MIN, fit_temperature


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


def test_fitted_temperature_is_the_nll_argmin_on_a_grid():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(500, 7, generator=g) * 4
    labels = torch.where(torch.rand(500, generator=g) < 0.6, logits.argmax(1), torch.randint(0, 7, (500,), generator=g))
    grid = torch.logspace(torch.tensor(T_MIN).log10(), torch.tensor(T_MAX).log10(), 4000, dtype=torch.float64)
    nll = torch.stack([F.cross_entropy(logits.double() / t, labels) for t in grid])
    best = float(grid[nll.argmin()])
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(best, rel=0.01) and 1.0 < t < T_MAX  # a genuine interior optimum
