"""The gate: a network that weights the experts per sample, learned from their logits only.

``network``: features, the MLP, the mixture and its NLL training; ``selective_objective``: the gate
trained jointly with a plug-in rule; ``pipeline``: from the experts' logits to the trained gate, its
reports and the mixture (written by argse.stages.gate; ``python -m argse.train_gating``).
"""

from argse.gating.network import GateMLP, gating_features, mixture_log_probs, train_gate

__all__ = ["GateMLP", "gating_features", "mixture_log_probs", "train_gate"]
