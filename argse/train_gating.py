"""Train the gating network on exported expert logits and export the mixture.

``python -m argse.train_gating --config RUN.yaml [--experts ce,logit_adjust,...]``
(default: every expert with exported logits in the run). Reads only logits files. The gate trains
on the gate part of ``tune`` (``gating.tune_fraction``); the rest of ``tune`` is left for the
rejectors that ``evaluate`` fits, so no rejector is fitted on the samples that trained the gate.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from rich.table import Table

from argse import cli, storage
from argse.data import head_tail_groups, shot_groups
from argse.errors import ArgseError
from argse.gating import (
    constant_weights,
    gating_features,
    mixture_log_probs,
    routing_stats,
    sample_weights,
    train_gate,
    tune_parts,
)
from argse.logits import available_sources, load_sources, logits_path, write_logits
from argse.metrics import classification_report, lt_weights
from argse.selective_gate import train_selective_gate

SPLITS = ("tune", "val", "test")


def expert_names(cfg, requested: str | None) -> list[str]:
    names = cli.split_names(requested) or [s for s in available_sources(cfg.out_dir) if s != "gating"]
    if not names:
        raise ArgseError(f"no exported expert logits under {cfg.out_dir / 'logits'}; run make experts first")
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
    feats = {s: gating_features(logp[s].exp(), gcfg.top_k, gcfg.features == "rich+posteriors") for s in SPLITS}
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
        if len(gcfg.fixed_weights) != e or min(gcfg.fixed_weights, default=-1) < 0 or sum(gcfg.fixed_weights) <= 0:
            raise ArgseError(
                f"gating.fixed_weights must hold {e} non-negative weights (one per expert: "
                f"{', '.join(names)}), got {gcfg.fixed_weights}"
            )
        w = torch.tensor(gcfg.fixed_weights, dtype=torch.float64)
        w = w / w.sum()
    return {s: w.clamp_min(1e-300).log().expand(n, -1) for s, n in sizes.items()}


def export_mixture(cfg, files: dict, log_w: dict, logp: dict, names: list[str]) -> None:
    for s in SPLITS:
        f = files[s][0]
        write_logits(
            logits_path(cfg.out_dir, "gating", s),
            mixture_log_probs(log_w[s], logp[s]).float(),
            f.labels, f.indices, expert="gating", dataset=f.dataset, split=s, temperature=1.0,
            class_counts=f.class_counts, splits_sha256=f.splits_sha256, config={"experts": names, **asdict(cfg.gating)},
        )  # fmt: skip


def test_reports(cfg, names, logp, labels, log_w, const_w, counts) -> dict[str, dict]:
    """Each expert, the uniform average, the best constant mixture and the gate, on test."""
    groups = head_tail_groups(counts, cfg.data.tail_max_count)
    shots = shot_groups(counts, cfg.data.many_min_count, cfg.data.few_max_count)
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


def print_tables(cfg, names: list[str], reports: dict, routing: dict) -> None:
    console = cli.console()
    table = Table(title=f"{cfg.name}: gating on test (%; NLL in nats)")
    for col in ("source", "acc", "balanced_acc", "head", "tail", "nll"):
        table.add_column(col, justify="right" if col != "source" else "left")
    for name, rep in reports.items():
        cells = (f"{100 * rep[c]:.2f}" for c in ("acc", "balanced_acc", "head", "tail"))
        table.add_row(name, *cells, f"{rep['nll']:.3f}")
    console.print(table)
    wt = Table(title="gate weight per group on test: mean [10th, 90th percentile]")
    wt.add_column("group")
    for n in names:
        wt.add_column(n, justify="right")
    for g, per_expert in routing.items():
        wt.add_row(g, *(f"{s['mean']:.3f} [{s['p10']:.3f}, {s['p90']:.3f}]" for s in per_expert.values()))
    console.print(wt)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--experts", default=None, help="comma list of experts to mix (default: all exported)")
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    cli.lock_run(cfg, "train_gating")
    names = expert_names(cfg, args.experts)
    files = load_sources(cfg.out_dir, names, list(SPLITS))
    labels = {s: files[s][0].labels for s in SPLITS}
    logp = {s: torch.stack([F.log_softmax(f.calibrated.double(), dim=1) for f in files[s]]) for s in SPLITS}
    gate_part, rejector_part = tune_parts(labels["tune"], cfg.gating.tune_fraction, cfg.seed)
    tune_idx = files["tune"][0].indices
    info: dict = {
        "experts": names, "gate": cfg.gating.gate, "objective": cfg.gating.objective, "config": asdict(cfg.gating),
        "test_prior": cfg.evaluate.test_prior,
        "samples": {"gate_trained_on": {"split": "tune", "indices": tune_idx[gate_part].tolist()},
                    "left_for_rejectors": {"split": "tune", "indices": tune_idx[rejector_part].tolist()}},
    }  # fmt: skip
    if cfg.gating.gate == "learned":
        counts = torch.tensor(files["tune"][0].class_counts)
        log_w, fit_info, gate = learned_weights(cfg, logp, labels, gate_part, counts)
        info |= fit_info
        meta = {"format": "argse.gate/1", "experts": ",".join(names)}
        storage.save_tensors(cfg.out_dir / "gating" / "gate.safetensors", gate.state_dict(), meta)
    else:
        log_w = fixed_weights(cfg, names, {s: len(labels[s]) for s in SPLITS})
    export_mixture(cfg, files, log_w, logp, names)

    # The baseline a gate must beat to be routing: one weight vector for every sample, fitted on its data.
    y_gate = labels["tune"][gate_part]
    label_logp = logp["tune"][:, gate_part].gather(2, y_gate.view(1, -1, 1).expand(len(names), -1, 1))
    balanced = cfg.gating.objective != "nll"
    const_w = constant_weights(label_logp.squeeze(2).t(), sample_weights(y_gate, logp["tune"].shape[2], balanced))
    counts = torch.tensor(files["tune"][0].class_counts)
    groups = head_tail_groups(counts, cfg.data.tail_max_count)
    group_of = {g: groups.of_class[labels["test"]] == k for k, g in enumerate(groups.names)}
    routing = routing_stats(log_w["test"].exp(), group_of, names)
    reports = test_reports(cfg, names, logp, labels, log_w, const_w, counts)
    info |= {"test": reports, "constant_weights": dict(zip(names, const_w.tolist(), strict=True)), "routing": routing}
    info["mean_weight_by_group"] = {g: {n: s["mean"] for n, s in r.items()} for g, r in routing.items()}
    gate_json = storage.write_json(cfg.out_dir / "gating" / "gate.json", info)
    print_tables(cfg, names, reports, routing)
    console = cli.console()
    gate_files = "gate.json, gate.safetensors" if cfg.gating.gate == "learned" else "gate.json"
    console.print(f"gate: {gate_json.parent}/ ({gate_files})")
    console.print(f"mixture logits: {logits_path(cfg.out_dir, 'gating', 'test').parent}/{{val,tune,test}}.safetensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
