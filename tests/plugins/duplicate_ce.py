"""A plugin that registers a name argse already has: loading it must be one sentence (fault tests)."""

from argse.experts import StandardExpert, register_expert


@register_expert("ce")
class AnotherCrossEntropy(StandardExpert):
    """Clashes with the built-in ce."""
