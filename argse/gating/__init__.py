"""The gate: a network that weights the experts per sample, learned from their logits only.

``network``: features, the MLP, the mixture and its NLL training; ``selective_objective``: the gate
trained jointly with a plug-in rule; ``store``: the gate's files (``argse.gate/1``); ``pipeline``:
from exported logits to the gate's files and the mixture's logits (``python -m argse.train_gating``).
"""

from argse.gating.network import GateMLP, gating_features, mixture_log_probs, train_gate
from argse.gating.store import Gate, read_gate, write_gate

__all__ = ["Gate", "GateMLP", "gating_features", "mixture_log_probs", "read_gate", "train_gate", "write_gate"]
