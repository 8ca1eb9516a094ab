"""``ce``: plain cross-entropy with instance-balanced sampling (the baseline)."""

from argse.experts.base import StandardExpert, register_expert


@register_expert("ce")
class CrossEntropyExpert(StandardExpert):
    """Plain cross-entropy on the long-tailed training set."""
