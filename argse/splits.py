"""The two parts of ``tune``: one trains the gate, the other fits the rejectors.

Every tool that reads ``tune`` (train_gating, evaluate, the studies) takes its parts from here with
the same arguments, so no rejector is ever fitted on a sample that trained the gate it judges.
"""

from __future__ import annotations

import torch

from argse import seeds


def tune_parts(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions in ``tune`` that train the gate, and the rest, which fit the rejectors.

    Per class, a seeded ``fraction`` of the samples (rounded; at least one on each side when the
    class has two) goes to the gate, so both parts keep the split's class mix. Every tool that
    reads ``tune`` calls this with the same arguments and gets the same parts.
    """
    g = seeds.generator(seed, "tune_parts")
    in_gate = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique(sorted=True):
        pos = (labels == c).nonzero().flatten()
        pos = pos[torch.randperm(len(pos), generator=g)]
        n = min(max(round(fraction * len(pos)), 1), len(pos) - 1) if len(pos) > 1 else 0
        in_gate[pos[:n]] = True
    return in_gate.nonzero().flatten(), (~in_gate).nonzero().flatten()
