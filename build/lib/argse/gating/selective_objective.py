"""A gate trained for the selective objective: ``gating.objective: selective_balanced | selective_worst``.

The NLL gate is fitted for the mixture's likelihood and the rejector afterwards. Here the gate and
one plug-in rule per target rejection rate r (the rule family of ``argse.selective``: predict
argmax_y alpha_[y] p_y, accept iff max_y alpha_[y] p_y - sum_y b_[y] p_y >= t) are trained together
on a smooth version of the error that ``evaluate`` measures:

    accept_i  = sigmoid((s_i - t) / T)                  (the indicator s_i >= t as T -> 0)
    wrong_i   = 1 - softmax(alpha_[.] p_i / T)[y_i]     (the 0-1 error of argmax_y alpha_[y] p_y as T -> 0)
    e_k       = (sum_i w_i accept_i wrong_i [g_i = k] + c_k) / (sum_i w_i accept_i [g_i = k] + c_k)
    loss_r    = sum_k beta_k e_k + lambda (soft rejection rate - r)^2

c_k, the weight of one average sample of group k, is a pseudo-sample that is always accepted and
always wrong: it is negligible while the group keeps accepted samples, and it takes e_k to 1 when
the group is rejected entirely, as the hard error counts an empty group. Without it the surrogate
could empty a group to zero its error. w_i are the sample weights of ``evaluate.test_prior``
(pi_train / pi_split under ``train``), so the surrogate's group errors and rejection rate are
those of the report. beta = 1/K gives the
balanced error; for the worst-group error beta follows exponentiated-gradient updates on the hard
group errors (Narasimhan et al. 2024, Algorithm 2: the max over groups is the max over beta of
sum_k beta_k e_k). Only labels of the gate part of ``tune`` enter training and only ``val`` picks
the epoch; at test time the rule needs no label.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from argse.config.schema import changed
from argse.config.sections import GatingConfig
from argse.core import seeds
from argse.gating.network import GateMLP, train_gate
from argse.selective.views import EMPTY_GROUP_ERROR, threshold


@dataclass
class RuleParams:
    """Rules for R target rates with K groups; group 0 is the reference (alpha_0 = 1, mu_0 = 0)."""

    log_alpha: torch.Tensor  # [R, K-1]
    mu: torch.Tensor  # [R, K-1], mu_k = alpha_k - b_k
    t: torch.Tensor  # [R]

    def alpha_b(self) -> tuple[torch.Tensor, torch.Tensor]:
        zero = torch.zeros(len(self.t), 1, dtype=self.t.dtype)
        alpha = torch.cat([zero, self.log_alpha], 1).exp()
        return alpha, alpha - torch.cat([zero, self.mu], 1)

    def tensors(self) -> list[torch.Tensor]:
        return [self.log_alpha, self.mu, self.t]


def rule_errors(
    probs: torch.Tensor,
    labels: torch.Tensor,
    class_group: torch.Tensor,
    k: int,
    alpha: torch.Tensor,
    b: torch.Tensor,
    t: torch.Tensor,
    weight: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group errors among accepted samples [R, K] and the rejection rate [R] of R rules on ``probs`` [N, C].

    ``temperature`` > 0 gives the differentiable surrogate; 0 gives the hard rates of ``argse.selective``
    (indicators; a group with nothing accepted counts as error 1).
    """
    a, bc = alpha[:, class_group], b[:, class_group]  # [R, C]
    weighted = a[:, None, :] * probs[None]  # [R, N, C]
    s = weighted.max(2).values - (bc[:, None, :] * probs[None]).sum(2)  # [R, N]
    if temperature > 0:
        accept = torch.sigmoid((s - t[:, None]) / temperature)
        wrong = (
            1 - torch.softmax(weighted / temperature, 2).gather(2, labels.view(1, -1, 1).expand(len(t), -1, 1))[..., 0]
        )
    else:
        accept = (s >= t[:, None]).to(probs.dtype)
        wrong = (weighted.argmax(2) != labels[None]).to(probs.dtype)
    onehot = F.one_hot(class_group[labels], k).to(probs.dtype) * weight[:, None]  # [N, K]
    acc_k = accept @ onehot  # [R, K]
    err_k = (accept * wrong) @ onehot
    if temperature > 0:
        pseudo = onehot.sum(0) / onehot.gt(0).sum(0).clamp_min(1)  # one average sample of each group
        err = (err_k + pseudo) / (acc_k + pseudo).clamp_min(1e-12)
    else:
        err = torch.where(acc_k > 0, err_k / acc_k.clamp_min(1e-300), torch.full_like(acc_k, EMPTY_GROUP_ERROR))
    return err, 1 - (accept @ weight) / weight.sum()


def surrogate_loss(err: torch.Tensor, reject: torch.Tensor, rates: torch.Tensor, beta: torch.Tensor, cov_w: float):
    """Mean over rates of sum_k beta_k e_k plus the coverage penalty."""
    return ((beta * err).sum(1) + cov_w * (reject - rates) ** 2).mean()


def quantile_t(probs: torch.Tensor, alpha: torch.Tensor, b: torch.Tensor, rates, weight: torch.Tensor, class_group):
    """Per rule, the threshold that rejects the target share (weighted) of ``probs``: as ``evaluate`` sets it."""
    a, bc = alpha[:, class_group], b[:, class_group]
    s = (a[:, None, :] * probs[None]).max(2).values - (bc[:, None, :] * probs[None]).sum(2)
    s, w = s.detach().double().numpy(), weight.double().numpy()
    return torch.tensor([float(threshold(s[i], r, w)) for i, r in enumerate(rates)], dtype=probs.dtype)


def mixture(gate: GateMLP, feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """sum_e w_e(x) p_e(y|x): ``probs`` [E, N, C] -> [N, C]."""
    return torch.einsum("ne,enc->nc", torch.softmax(gate(feats), 1), probs)


def hard_objective(err: torch.Tensor, worst: bool) -> float:
    return float((err.max(1).values if worst else err.mean(1)).mean())


@dataclass
class _JointFit:
    """What the joint training of a gate and its rules works on (float32 tensors, gate part of tune and val)."""

    gate: GateMLP
    rule: RuleParams
    feats: dict[str, torch.Tensor]
    probs: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    class_group: torch.Tensor
    k: int
    rates: torch.Tensor
    worst: bool

    def errors(self, split: str, temperature: float, t: torch.Tensor | None = None, idx=None):
        """Group errors and rejection rates of the current gate and rules on ``split`` (rows ``idx``)."""
        feats, probs, labels, w = self.feats[split], self.probs[split], self.labels[split], self.weights[split]
        if idx is not None:
            feats, probs, labels, w = feats[idx], probs[:, idx], labels[idx], w[idx]
        alpha, b = self.rule.alpha_b()
        mix = mixture(self.gate, feats, probs)
        if t is None:  # judged at the target rates exactly: t is the split's own quantile, as evaluate does
            t = quantile_t(mix, alpha, b, self.rates.tolist(), w, self.class_group)
        return rule_errors(mix, labels, self.class_group, self.k, alpha, b, t, w, temperature)

    def val_objective(self) -> float:
        with torch.no_grad():
            return hard_objective(self.errors("val", 0.0)[0], self.worst)

    def snapshot(self, val: float, beta: torch.Tensor) -> tuple:
        return val, copy.deepcopy(self.gate.state_dict()), [x.detach().clone() for x in self.rule.tensors()], beta


def _start(feats, probs, labels, weights, class_group, k, cfg: GatingConfig) -> tuple[_JointFit, dict]:
    """Warm the gate up on balanced NLL; every rule starts as Chow's rule at its rate's quantile."""
    label_logp = {s: probs[s].gather(2, labels[s].view(1, -1, 1).expand(len(probs[s]), -1, 1))[..., 0].t()
                  for s in probs}  # fmt: skip
    warm = changed(cfg, objective="balanced_nll", epochs=cfg.selective_warmup_epochs)
    gate, warm_info = train_gate(
        feats, {s: v.clamp_min(1e-30).log() for s, v in label_logp.items()}, labels, probs["tune"].shape[2], warm
    )
    rates = torch.tensor(cfg.selective_rates, dtype=torch.float32)
    p = {s: v.to(torch.float32) for s, v in probs.items()}
    w = {s: v.to(torch.float32) for s, v in weights.items()}
    one = torch.ones(len(rates), k, dtype=torch.float32)
    with torch.no_grad():
        t0 = quantile_t(mixture(gate, feats["tune"], p["tune"]), one, one, rates.tolist(), w["tune"], class_group)
    zeros = [torch.zeros(len(rates), k - 1, requires_grad=True) for _ in range(2)]
    rule = RuleParams(*zeros, t0.clone().requires_grad_(True))
    fit = _JointFit(gate, rule, feats, p, labels, w, class_group, k, rates, cfg.objective == "selective_worst")
    return fit, warm_info


def _epoch(fit: _JointFit, opt, beta: torch.Tensor, cfg: GatingConfig, g: torch.Generator) -> dict:
    """One pass over the gate part of tune on the surrogate; then its soft and hard figures there."""
    n = len(fit.labels["tune"])
    batch = cfg.batch_size or n
    fit.gate.train()
    order = torch.randperm(n, generator=g) if batch < n else torch.arange(n)
    for start in range(0, n, batch):
        opt.zero_grad(set_to_none=True)
        err, reject = fit.errors("tune", cfg.selective_temperature, fit.rule.t, order[start : start + batch])
        surrogate_loss(err, reject, fit.rates, beta, cfg.selective_coverage_weight).backward()
        opt.step()
    fit.gate.eval()
    with torch.no_grad():
        soft_err, soft_rej = fit.errors("tune", cfg.selective_temperature, fit.rule.t)
        hard_err, hard_rej = fit.errors("tune", 0.0, fit.rule.t)
    surrogate = float(surrogate_loss(soft_err, soft_rej, fit.rates, beta, cfg.selective_coverage_weight))
    return {"surrogate": surrogate, "hard_err": hard_err, "train_objective": hard_objective(hard_err, fit.worst),
            "train_rejection": hard_rej.tolist()}  # fmt: skip


def train_selective_gate(
    feats: dict[str, torch.Tensor],
    probs: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    weights: dict[str, torch.Tensor],
    class_group: torch.Tensor,
    k: int,
    cfg: GatingConfig,
) -> tuple[GateMLP, list[dict], dict]:
    """Warm up on balanced NLL, then train gate and rules jointly; early-stop on the hard objective on val.

    ``probs[split]`` [E, N, C] are the experts' calibrated posteriors, ``weights[split]`` [N] the
    test-prior sample weights; splits are ``tune`` (the gate part) and ``val``. Returns the gate,
    one rule per rate ({rate, alpha, b, t}) and training information.
    """
    fit, warm_info = _start(feats, probs, labels, weights, class_group, k, cfg)
    opt = torch.optim.AdamW(
        [
            {"params": fit.gate.parameters(), "lr": cfg.lr, "weight_decay": cfg.weight_decay},
            {"params": fit.rule.tensors(), "lr": cfg.selective_rule_lr, "weight_decay": 0.0},
        ]
    )
    beta = torch.full((len(fit.rates), k), 1.0 / k, dtype=torch.float32)
    g = seeds.generator(cfg.seed, "gate")
    fit.gate.eval()
    best, history, since = fit.snapshot(fit.val_objective(), beta), [], 0
    for _ in range(cfg.epochs):
        stats = _epoch(fit, opt, beta, cfg, g)
        if fit.worst:  # exponentiated gradient: weight moves to the groups whose (hard) error is highest
            beta = beta * torch.exp(cfg.selective_eg_step * stats.pop("hard_err"))
            beta = beta / beta.sum(1, keepdim=True)
        stats.pop("hard_err", None)
        val = fit.val_objective()
        history.append({"surrogate": stats["surrogate"], "train_objective": stats["train_objective"],
                        "val_objective": val, "train_rejection": stats["train_rejection"]})  # fmt: skip
        if val < best[0] - 1e-6:
            best, since = fit.snapshot(val, beta), 0
        else:
            since += 1
            if since >= cfg.patience:
                break
    fit.gate.load_state_dict(best[1])
    fit.gate.eval()
    alpha, b = RuleParams(*best[2]).alpha_b()
    rules = [{"rate": r, "alpha": alpha[i].tolist(), "b": b[i].tolist(), "t": float(best[2][2][i]),
              "beta": best[3][i].tolist()} for i, r in enumerate(cfg.selective_rates)]  # fmt: skip
    info = {
        "warmup": {"epochs_run": warm_info["epochs_run"], "best_val_nll": warm_info["best_val_nll"]},
        "best_val_objective": best[0],
        "val_objective_metric": "worst_group_error" if fit.worst else "balanced_error",
        "epochs_run": len(history),
        "history": history,
    }
    return fit.gate, rules, info
