"""The gating network: per-sample mixture weights over experts, learned from their logits only.

Features do not depend on the number of classes (entropy, confidence, margins, agreement
with the mean posterior), so one gate design serves CIFAR-10 and ImageNet-LT alike. The
gate is trained on ``tune`` by the negative log-likelihood of the mixture
p(y|x) = sum_e w_e(x) p_e(y|x), with early stopping on ``val``.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from argse.config.sections import GatingConfig
from argse.core import seeds

EPS = 1e-12


def gating_features(probs: torch.Tensor, top_k: int = 5, with_posteriors: bool = False) -> torch.Tensor:
    """Per-sample features from calibrated posteriors ``probs`` [E, N, C] -> [N, F].

    Per expert: entropy, max probability, top-1 minus top-2 gap, top-k mass, cosine similarity
    and KL divergence to the mean posterior. Global: entropy of the mean posterior and the
    spread (std) of the experts' max probabilities. Optionally the raw posteriors.
    """
    e, n, c = probs.shape
    logp = probs.clamp_min(EPS).log()
    mean = probs.mean(0)
    top = probs.topk(min(max(top_k, 2), c), dim=2).values
    gap = top[..., 0] - top[..., 1] if c > 1 else top[..., 0]
    per_expert = [
        -(probs * logp).sum(2),
        top[..., 0],
        gap,
        top[..., :top_k].sum(2),
        F.cosine_similarity(probs, mean.unsqueeze(0), dim=2),
        (probs * (logp - mean.clamp_min(EPS).log().unsqueeze(0))).sum(2),
    ]
    feats = [torch.stack(per_expert, dim=2).permute(1, 0, 2).reshape(n, -1)]
    spread = top[..., 0].std(0, unbiased=False) if e > 1 else torch.zeros(n, dtype=probs.dtype)
    feats.append(torch.stack([-(mean * mean.clamp_min(EPS).log()).sum(1), spread], dim=1))
    if with_posteriors:
        feats.append(probs.permute(1, 0, 2).reshape(n, -1))
    return torch.cat(feats, dim=1).float()


# Samples per block when features are computed from log-probabilities: a block's [E, rows, C] temporaries are
# the only ones made, so memory does not grow with N x C x experts. train_gating reads its splits in blocks of
# this size too; at iNaturalist 2018's 8,142 classes and 3 experts one block's float64 [E, rows, C] is 200 MB,
# and gating_features makes about six of them (docs/gating.md#train_gating-memory).
FEATURE_ROWS = 1024


def features_of(logp: torch.Tensor, top_k: int = 5, with_posteriors: bool = False) -> torch.Tensor:
    """:func:`gating_features` of ``logp.exp()`` [E, N, C], a block of samples at a time (every feature is
    per sample, so the blocks' features are those of the whole)."""
    n = logp.shape[1]
    blocks = [
        gating_features(logp[:, i : i + FEATURE_ROWS].exp(), top_k, with_posteriors) for i in range(0, n, FEATURE_ROWS)
    ]
    return torch.cat(blocks) if blocks else gating_features(logp.exp(), top_k, with_posteriors)


class GateMLP(nn.Module):
    """Standardised features -> MLP -> logits over experts."""

    def __init__(self, in_dim: int, num_experts: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        # set from the training features; sized here so that a saved gate loads into a new one
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(in_dim, h), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = h
        layers.append(nn.Linear(in_dim, num_experts))
        self.net = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net((feats - self.mean) / self.std)


def mixture_log_probs(log_weights: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """log sum_e w_e p_e(y): ``log_weights`` [N, E], ``log_probs`` [E, N, C] -> [N, C]."""
    return torch.logsumexp(log_weights.t().unsqueeze(2) + log_probs, dim=0)


def sample_weights(labels: torch.Tensor, num_classes: int, balanced: bool) -> torch.Tensor:
    """1 per sample, or 1 / (class frequency) so every class counts equally (mean 1)."""
    if not balanced:
        return torch.ones(len(labels))
    counts = torch.bincount(labels, minlength=num_classes).float()
    w = 1.0 / counts[labels]
    return w / w.mean()


def train_gate(
    feats: dict[str, torch.Tensor],
    label_logp: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    num_classes: int,
    cfg: GatingConfig,
) -> tuple[GateMLP, dict]:
    """Fit the gate on ``tune``, early-stopping on ``val``.

    ``label_logp[split]`` is [N, E]: each expert's log-probability of the true label. The mixture
    NLL needs only these, so an epoch costs O(N E), not O(N E C).
    """
    torch.manual_seed(seeds.seed(cfg.seed, "gate"))
    num_experts = label_logp["tune"].shape[1]
    gate = GateMLP(feats["tune"].shape[1], num_experts, cfg.hidden, cfg.dropout)
    gate.mean = feats["tune"].mean(0)
    gate.std = feats["tune"].std(0).clamp_min(1e-6)
    opt = torch.optim.AdamW(gate.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    balanced = cfg.objective == "balanced_nll"
    w = {s: sample_weights(labels[s], num_classes, balanced) for s in ("tune", "val")}

    def nll(split: str, idx: torch.Tensor | None = None) -> torch.Tensor:
        x, lp, sw = feats[split], label_logp[split], w[split]
        if idx is not None:
            x, lp, sw = x[idx], lp[idx], sw[idx]
        mix = torch.logsumexp(F.log_softmax(gate(x), dim=1) + lp, dim=1)
        return -(sw * mix).mean()

    n = len(labels["tune"])
    batch = cfg.batch_size or n
    g = seeds.generator(cfg.seed, "gate")
    best, best_state, since, history = math.inf, copy.deepcopy(gate.state_dict()), 0, []
    for _ in range(cfg.epochs):
        gate.train()
        order = torch.randperm(n, generator=g) if batch < n else None
        for start in range(0, n, batch):
            idx = order[start : start + batch] if order is not None else None
            opt.zero_grad(set_to_none=True)
            loss = nll("tune", idx)
            loss.backward()
            opt.step()
        gate.eval()
        with torch.no_grad():
            val = float(nll("val"))
        history.append(val)
        if val < best - 1e-6:
            best, best_state, since = val, copy.deepcopy(gate.state_dict()), 0
        else:
            since += 1
            if since >= cfg.patience:
                break
    gate.load_state_dict(best_state)
    gate.eval()
    return gate, {"best_val_nll": best, "epochs_run": len(history), "val_nll": history}


def constant_weights(label_logp: torch.Tensor, sample_w: torch.Tensor, steps: int = 200) -> torch.Tensor:
    """The one mixture weight vector [E] that minimises the (sample-weighted) mixture NLL.

    ``label_logp`` [N, E] is each expert's log-probability of the label. The NLL is convex in
    the weights, so softmax-parameterised L-BFGS finds the optimum; it is the fixed-weight
    baseline a per-sample gate has to beat.
    """
    theta = torch.zeros(label_logp.shape[1], dtype=torch.float64, requires_grad=True)
    lp, sw = label_logp.double(), sample_w.double()
    opt = torch.optim.LBFGS([theta], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -(sw * torch.logsumexp(F.log_softmax(theta, 0) + lp, dim=1)).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(theta.detach(), 0)


def routing_stats(weights: torch.Tensor, group_of: dict[str, torch.Tensor], names: list[str]) -> dict:
    """Spread of the per-sample gate weights [N, E]: mean and 10th / 90th percentiles per group and expert."""
    out = {}
    for g, mask in group_of.items():
        w = weights[mask].double()
        if len(w) == 0:
            continue
        q = torch.quantile(w, torch.tensor([0.1, 0.9], dtype=torch.float64), dim=0)
        out[g] = {
            n: {"mean": float(w[:, i].mean()), "p10": float(q[0, i]), "p90": float(q[1, i])}
            for i, n in enumerate(names)
        }
    return out
