"""A third-party rejector, registered without touching argse: Chow's rule on prior-corrected
probabilities (alpha = b = 1 / pi_k, pi_k the group's share of the fitting sample)."""

import numpy as np

from argse.selective.rejectors import Rule, register_rejector
from argse.selective.views import GroupView


@register_rejector("inverse_prior")
def inverse_prior(view: GroupView, rate: float, opts) -> Rule:
    prior = np.bincount(view.group, weights=view.weight, minlength=view.k) / view.weight.sum()
    scale = 1.0 / np.maximum(prior, 1e-12)
    return Rule(scale, scale, 0.0)  # fit_rule sets t to the rate's quantile
