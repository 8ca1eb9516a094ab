"""Every accuracy a report prints comes with a class-stratified bootstrap interval (argse.data.metrics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from argse.config.sections import DataConfig
from argse.data.groups import run_groups
from argse.data.metrics import lt_weights, per_class_accuracy, prediction_report, present_mean

COUNTS = torch.tensor([500, 300, 200, 100, 60, 40, 20, 10, 8, 5])


def _predictions(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    right = torch.rand(n, generator=g) < 0.4 + 0.05 * labels  # accuracy varies by class
    return torch.where(right, labels, (labels + 1) % 10), labels


def test_values_are_the_direct_ones_and_each_has_an_interval_around_it():
    pred, labels = _predictions(3000)
    groups, shots = run_groups(COUNTS, DataConfig(tail_max_count=20))
    rep = prediction_report(pred, labels, COUNTS, groups, shots)
    correct = (pred == labels).double()
    assert rep["acc"] == pytest.approx(float(correct.mean()), abs=1e-12)
    assert rep["acc_lt"] == pytest.approx(float((correct * lt_weights(labels, COUNTS)).mean()), abs=1e-12)
    assert rep["balanced_acc"] == pytest.approx(present_mean(per_class_accuracy(pred, labels, 10)), abs=1e-12)
    for name in ("acc", "acc_lt", "balanced_acc", "head", "tail", "many", "medium", "few", "worst_group_acc"):
        assert rep[f"{name}_low"] < rep[name] < rep[f"{name}_high"], name
    assert rep == prediction_report(pred, labels, COUNTS, groups, shots)  # seeded


def test_intervals_narrow_with_more_test_samples():
    groups, shots = run_groups(COUNTS, DataConfig(tail_max_count=20))
    width = []
    for n in (500, 8000):
        rep = prediction_report(*_predictions(n), COUNTS, groups, shots)
        width.append(rep["balanced_acc_high"] - rep["balanced_acc_low"])
    assert width[1] < width[0] / 2.5  # about 1 / sqrt(16) = 1/4


def test_binomial_draws_match_resampling_the_samples_within_each_class():
    """The shortcut (the number right among a class's n_c draws is Binomial(n_c, accuracy_c)) against
    resampling the samples themselves: the balanced accuracy's spread agrees."""
    pred, labels = _predictions(1000, seed=3)
    groups, shots = run_groups(COUNTS, DataConfig(tail_max_count=20))
    rep = prediction_report(pred, labels, COUNTS, groups, shots)
    correct = (pred == labels).numpy()
    rng = np.random.default_rng(1)
    members = [np.flatnonzero(labels.numpy() == c) for c in range(10)]
    explicit = [np.mean([correct[rng.choice(m, len(m))].mean() for m in members]) for _ in range(2000)]
    lo, hi = np.quantile(explicit, [0.025, 0.975])
    assert rep["balanced_acc_low"] == pytest.approx(lo, abs=0.006)
    assert rep["balanced_acc_high"] == pytest.approx(hi, abs=0.006)


def _logits_file(pred: torch.Tensor, labels: torch.Tensor):
    from argse.data.logits import LogitsFile

    logits = torch.nn.functional.one_hot(pred, 10).float()
    return LogitsFile(path="x", logits=logits, labels=labels, indices=torch.arange(len(labels)), expert="e",
                      dataset="d", split="test", num_classes=10, temperature=1.0, class_counts=COUNTS.tolist(),
                      splits_sha256="s",
                      config={})  # fmt: skip


def test_paired_differences_match_resampling_the_samples_for_both_sources_at_once():
    """Two sources' balanced accuracies on the same resamples: the multinomial shortcut against drawing the
    samples within each class; their difference's interval is narrower than either source's own interval says
    (both move together), and a source against itself differs by exactly 0."""
    from argse.data.metrics import paired_accuracy_draws

    labels = _predictions(1000, seed=3)[1]
    g = torch.Generator().manual_seed(5)
    pred_a = torch.where(torch.rand(1000, generator=g) < 0.6, labels, (labels + 1) % 10)
    pred_b = torch.where(torch.rand(1000, generator=g) < 0.1, (labels + 2) % 10, pred_a)  # a, a little worse
    data = DataConfig(tail_max_count=20)
    a, b = _logits_file(pred_a, labels), _logits_file(pred_b, labels)
    draws = paired_accuracy_draws(a, b, data)["balanced_acc"]
    ra, rb = ((p == labels).numpy() for p in (pred_a, pred_b))
    rng = np.random.default_rng(1)
    members = [np.flatnonzero(labels.numpy() == c) for c in range(10)]
    explicit = []
    for _ in range(2000):
        picks = [rng.choice(m, len(m)) for m in members]
        explicit.append(np.mean([ra[i].mean() - rb[i].mean() for i in picks]))
    assert np.quantile(draws, [0.025, 0.975]) == pytest.approx(np.quantile(explicit, [0.025, 0.975]), abs=0.004)
    assert np.quantile(draws, 0.025) > 0  # a is better beyond the noise
    assert np.all(paired_accuracy_draws(a, a, data)["balanced_acc"] == 0)
