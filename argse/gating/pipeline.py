"""Training the gate: from the experts' exported logits to the gate's files and the mixture's logits.

The gate trains on the gate part of ``tune`` (``gating.tune_fraction``); the rest of ``tune`` is left
for the rejectors that the evaluation fits, so no rejector is fitted on the samples that trained
the gate. Reads only logits files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from argse import filesets
from argse.config import RunConfig
from argse.errors import ArgseError
from argse.gating.network import (
    constant_weights,
    features_of,
    mixture_log_probs,
    routing_stats,
    sample_weights,
    train_gate,
)
from argse.gating.selective_objective import train_selective_gate
from argse.gating.store import GATE_SET, write_gate
from argse.groups import head_tail_groups, run_groups
from argse.logits import LogitsFile, available_sources, commit_export, load_sources, set_folder, write_logits
from argse.metrics import classification_report, lt_weights
from argse.splits import tune_parts

SPLITS = ("tune", "val", "test")


def expert_names(cfg: RunConfig, requested: list[str] | None) -> list[str]:
    """The experts to mix: ``requested``, else every source with exported logits but the gate itself."""
    names = requested or [s for s in available_sources(cfg.out_dir) if s != "gating"]
    if not names:
        raise ArgseError(f"no exported expert logits under {cfg.paths.logits_root}; run make experts first")
    if "gating" in names:
        raise ArgseError("the gate mixes experts; remove 'gating' from --experts")
    return names


def selective_gate(cfg, logp: dict, feats: dict, labels: dict, gate_part: torch.Tensor, counts: torch.Tensor):
    """The gate and its rules trained for the selective objective, under evaluate's test prior and groups."""
    groups = head_tail_groups(counts, cfg.data.tail_max_count)
    probs = {"tune": logp["tune"][:, gate_part].exp(), "val": logp["val"].exp()}
    if cfg.evaluate.test_prior == "train":
        weights = {s: lt_weights(y, counts) for s, y in labels.items()}
    else:
        weights = {s: torch.ones(len(y), dtype=torch.float64) for s, y in labels.items()}
    return train_selective_gate(feats, probs, labels, weights, groups.of_class, groups.k, cfg.gating)


def learned_weights(
    cfg, logp: dict, labels: dict, gate_part: torch.Tensor, counts: torch.Tensor
) -> tuple[dict, dict, object]:
    """Train the gate on the gate part of tune; per-split log weights [N, E], info and the gate."""
    gcfg, num_experts = cfg.gating, logp["tune"].shape[0]
    feats = {s: features_of(logp[s], gcfg.top_k, gcfg.features == "rich+posteriors") for s in SPLITS}
    label_logp = {
        s: logp[s].gather(2, labels[s].view(1, -1, 1).expand(num_experts, -1, 1)).squeeze(2).t().float() for s in SPLITS
    }
    fit = {"tune": feats["tune"][gate_part], "val": feats["val"]}
    fit_labels = {"tune": labels["tune"][gate_part], "val": labels["val"]}
    if gcfg.objective.startswith("selective_"):
        gate, rules, info = selective_gate(cfg, logp, fit, fit_labels, gate_part, counts)
        info = {"selective": info, "rules": rules}
    else:
        gate, info = train_gate(
            fit, {"tune": label_logp["tune"][gate_part], "val": label_logp["val"]}, fit_labels,
            logp["tune"].shape[2], gcfg,
        )  # fmt: skip
    with torch.no_grad():
        log_w = {s: F.log_softmax(gate(feats[s]), dim=1).double() for s in SPLITS}
    return log_w, info | {"feature_dim": feats["tune"].shape[1], "features": gcfg.features}, gate


def fixed_weights(cfg, names: list[str], sizes: dict[str, int]) -> dict:
    """Log weights of the uniform or the configured fixed mixture, per split."""
    gcfg, e = cfg.gating, len(names)
    if gcfg.gate == "uniform":
        w = torch.full((e,), 1.0 / e, dtype=torch.float64)
    else:
        # argse.config checks the weights themselves; only their count depends on the experts of this run.
        if len(gcfg.fixed_weights) != e:
            raise ArgseError(
                f"gating.fixed_weights holds {len(gcfg.fixed_weights)} weights for {e} experts "
                f"({', '.join(names)}); give one weight per expert, in that order"
            )
        w = torch.tensor(gcfg.fixed_weights, dtype=torch.float64)
        w = w / w.sum()
    return {s: w.clamp_min(1e-300).log().expand(n, -1) for s, n in sizes.items()}


def export_mixture(cfg, files: dict, log_w: dict, logp: dict, names: list[str]) -> None:
    """The mixture's log-probabilities on every split, as the logits of source 'gating'."""
    for s in SPLITS:
        f = files[s][0]
        write_logits(
            cfg.paths.logits("gating", s),
            mixture_log_probs(log_w[s], logp[s]).float(),
            f.labels, f.indices, expert="gating", dataset=f.dataset, split=s, temperature=1.0,
            class_counts=f.class_counts, splits_sha256=f.splits_sha256, config={"experts": names, **asdict(cfg.gating)},
        )  # fmt: skip
    gate = filesets.ids_of(cfg.out_dir, [GATE_SET])
    commit_export(cfg.out_dir, "gating", gate, "python -m argse.train_gating")


def mixture_reports(cfg, names, logp, labels, log_w, const_w, counts) -> dict[str, dict]:
    """Each expert, the uniform average, the best constant mixture and the gate, on test."""
    groups, shots = run_groups(counts, cfg.data)
    y, lp, e = labels["test"], logp["test"], len(names)
    candidates = {n: lp[i] for i, n in enumerate(names)}
    candidates["uniform"] = mixture_log_probs(torch.full((len(y), e), -math.log(e), dtype=torch.float64), lp)
    candidates["constant (fitted)"] = mixture_log_probs(const_w.log().expand(len(y), -1), lp)
    candidates[f"gating ({cfg.gating.gate})"] = mixture_log_probs(log_w["test"], lp)
    reports = {}
    for name, mix in candidates.items():
        rep = classification_report(mix, y, counts, groups, shots)
        rep["nll"] = float(-mix.gather(1, y.view(-1, 1)).mean())
        reports[name] = rep
    return reports


@dataclass
class GatingRun:
    """What train_gating produced: gate.json's content and where the gate and the mixture went."""

    names: list[str]
    info: dict  # gate.json: settings, samples, test reports, constant weights, routing
    gate_dir: Path
    mixture_dir: Path

    @property
    def reports(self) -> dict[str, dict]:
        return self.info["test"]

    @property
    def routing(self) -> dict[str, dict]:
        return self.info["routing"]


def sample_record(cfg: RunConfig, names: list[str], tune: LogitsFile, gate_part, rejector_part) -> dict:
    """gate.json's settings, and which samples of tune the gate trained on and which it left to the rejectors."""
    return {
        "experts": names, "gate": cfg.gating.gate, "objective": cfg.gating.objective, "config": asdict(cfg.gating),
        "test_prior": cfg.evaluate.test_prior,
        "samples": {"gate_trained_on": {"split": "tune", "indices": tune.indices[gate_part].tolist()},
                    "left_for_rejectors": {"split": "tune", "indices": tune.indices[rejector_part].tolist()}},
    }  # fmt: skip


def constant_baseline(cfg: RunConfig, logp: dict, labels: dict, gate_part: torch.Tensor) -> torch.Tensor:
    """The baseline a gate must beat to be routing: one weight vector for every sample, fitted on its data."""
    num_experts, y_gate = logp["tune"].shape[0], labels["tune"][gate_part]
    label_logp = logp["tune"][:, gate_part].gather(2, y_gate.view(1, -1, 1).expand(num_experts, -1, 1))
    balanced = cfg.gating.objective != "nll"
    return constant_weights(label_logp.squeeze(2).t(), sample_weights(y_gate, logp["tune"].shape[2], balanced))


def run(cfg: RunConfig, names: list[str]) -> GatingRun:
    """Train (or set) the gate over experts ``names``, export the mixture's logits and write gate.json."""
    files = load_sources(cfg.out_dir, names, list(SPLITS))
    labels = {s: files[s][0].labels for s in SPLITS}
    logp = {s: torch.stack([F.log_softmax(f.calibrated.double(), dim=1) for f in files[s]]) for s in SPLITS}
    counts = torch.tensor(files["tune"][0].class_counts)
    gate_part, rejector_part = tune_parts(labels["tune"], cfg.gating.tune_fraction, cfg.seed)
    info = sample_record(cfg, names, files["tune"][0], gate_part, rejector_part)
    if cfg.gating.gate == "learned":
        log_w, fit_info, gate = learned_weights(cfg, logp, labels, gate_part, counts)
        info |= fit_info
    else:
        log_w, gate = fixed_weights(cfg, names, {s: len(labels[s]) for s in SPLITS}), None
    const_w = constant_baseline(cfg, logp, labels, gate_part)
    group_of = head_tail_groups(counts, cfg.data.tail_max_count).sample_masks(labels["test"])
    routing = routing_stats(log_w["test"].exp(), group_of, names)
    reports = mixture_reports(cfg, names, logp, labels, log_w, const_w, counts)
    info |= {"test": reports, "constant_weights": dict(zip(names, const_w.tolist(), strict=True)), "routing": routing}
    info["mean_weight_by_group"] = {g: {n: s["mean"] for n, s in r.items()} for g, r in routing.items()}
    made_from = filesets.ids_of(cfg.out_dir, [set_folder(n) for n in names])
    gate_json = write_gate(cfg.paths, info, gate, made_from)
    export_mixture(cfg, files, log_w, logp, names)  # after the gate: the mixture records the gate it came from
    return GatingRun(names, info, gate_json.parent, cfg.paths.logits_dir("gating"))
