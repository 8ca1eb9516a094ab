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
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from argse.config import GatingConfig
from argse.gating import GateMLP, train_gate
from argse.selective import EMPTY_GROUP_ERROR, threshold


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
    worst = cfg.objective == "selective_worst"
    label_logp = {s: probs[s].gather(2, labels[s].view(1, -1, 1).expand(len(probs[s]), -1, 1))[..., 0].t()
                  for s in probs}  # fmt: skip
    warm = replace(cfg, objective="balanced_nll", epochs=cfg.selective_warmup_epochs)
    gate, warm_info = train_gate(
        feats, {s: v.clamp_min(1e-30).log() for s, v in label_logp.items()}, labels, probs["tune"].shape[2], warm
    )
    rates = torch.tensor(cfg.selective_rates, dtype=torch.float32)
    r_n = len(rates)
    dtype = torch.float32
    p = {s: v.to(dtype) for s, v in probs.items()}
    w = {s: v.to(dtype) for s, v in weights.items()}
    one = torch.ones(r_n, k, dtype=dtype)
    with torch.no_grad():
        t0 = quantile_t(mixture(gate, feats["tune"], p["tune"]), one, one, rates.tolist(), w["tune"], class_group)
    # Every rule starts as Chow's rule (alpha = b = 1) at its rate's quantile.
    rule = RuleParams(torch.zeros(r_n, k - 1, requires_grad=True), torch.zeros(r_n, k - 1, requires_grad=True),
                      t0.clone().requires_grad_(True))  # fmt: skip
    opt = torch.optim.AdamW(
        [
            {"params": gate.parameters(), "lr": cfg.lr, "weight_decay": cfg.weight_decay},
            {"params": rule.tensors(), "lr": cfg.selective_rule_lr, "weight_decay": 0.0},
        ]
    )
    beta = torch.full((r_n, k), 1.0 / k, dtype=dtype)
    n = len(labels["tune"])
    batch = cfg.batch_size or n
    g = torch.Generator().manual_seed(cfg.seed)
    tune_labels, val_labels = labels["tune"], labels["val"]

    def val_objective() -> float:
        # The rule's own t holds the rate on its training samples; on val, t is reset to the val quantile
        # so that every epoch is judged at the target rates exactly, as evaluate judges a rule.
        with torch.no_grad():
            mix = mixture(gate, feats["val"], p["val"])
            alpha, b = rule.alpha_b()
            t = quantile_t(mix, alpha, b, rates.tolist(), w["val"], class_group)
            err, _ = rule_errors(mix, val_labels, class_group, k, alpha, b, t, w["val"], 0.0)
        return hard_objective(err, worst)

    gate.eval()
    best = (val_objective(), copy.deepcopy(gate.state_dict()), [x.detach().clone() for x in rule.tensors()], beta)
    history: list[dict] = []
    since = 0
    for _ in range(cfg.epochs):
        gate.train()
        order = torch.randperm(n, generator=g) if batch < n else torch.arange(n)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            opt.zero_grad(set_to_none=True)
            alpha, b = rule.alpha_b()
            mix = mixture(gate, feats["tune"][idx], p["tune"][:, idx])
            err, reject = rule_errors(
                mix, tune_labels[idx], class_group, k, alpha, b, rule.t, w["tune"][idx], cfg.selective_temperature
            )
            loss = surrogate_loss(err, reject, rates, beta, cfg.selective_coverage_weight)
            loss.backward()
            opt.step()
        gate.eval()
        with torch.no_grad():
            alpha, b = rule.alpha_b()
            mix = mixture(gate, feats["tune"], p["tune"])
            args = (mix, tune_labels, class_group, k, alpha, b, rule.t, w["tune"])
            soft_err, soft_rej = rule_errors(*args, cfg.selective_temperature)
            surrogate = float(surrogate_loss(soft_err, soft_rej, rates, beta, cfg.selective_coverage_weight))
            hard_err, hard_rej = rule_errors(*args, 0.0)
        if worst:  # exponentiated gradient: weight moves to the groups whose (hard) error is highest
            beta = beta * torch.exp(cfg.selective_eg_step * hard_err)
            beta = beta / beta.sum(1, keepdim=True)
        val = val_objective()
        history.append({"surrogate": surrogate, "train_objective": hard_objective(hard_err, worst), "val_objective": val,
                        "train_rejection": hard_rej.tolist()})  # fmt: skip
        if val < best[0] - 1e-6:
            best, since = (val, copy.deepcopy(gate.state_dict()), [x.detach().clone() for x in rule.tensors()], beta), 0
        else:
            since += 1
            if since >= cfg.patience:
                break
    gate.load_state_dict(best[1])
    gate.eval()
    final = RuleParams(*best[2])
    alpha, b = final.alpha_b()
    rules = [
        {"rate": r, "alpha": alpha[i].tolist(), "b": b[i].tolist(), "t": float(final.t[i]),
         "beta": best[3][i].tolist()}
        for i, r in enumerate(cfg.selective_rates)
    ]  # fmt: skip
    info = {
        "warmup": {"epochs_run": warm_info["epochs_run"], "best_val_nll": warm_info["best_val_nll"]},
        "best_val_objective": best[0],
        "val_objective_metric": "worst_group_error" if worst else "balanced_error",
        "epochs_run": len(history),
        "history": history,
    }
    return gate, rules, info


def nearest_rule(rules: list[dict], rate: float) -> dict:
    """The learned rule whose training rate is closest to ``rate`` (ties: the lower rate)."""
    return min(rules, key=lambda r: (abs(r["rate"] - rate), r["rate"]))
