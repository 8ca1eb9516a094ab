"""Train the gating network on exported expert logits and export the mixture.

``python -m argse.train_gating --config RUN.yaml [--experts ce,logit_adjust,...]``
(default: every expert with exported logits in the run). Reads only logits files.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from rich.table import Table

from argse import cli, io
from argse.data import head_tail_groups, shot_groups
from argse.errors import ArgseError
from argse.gating import gating_features, mixture_log_probs, train_gate
from argse.logits import available_sources, load_sources, logits_path, write_logits
from argse.metrics import classification_report

SPLITS = ("tune", "val", "test")


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--experts", default=None, help="comma list of experts to mix (default: all exported)")
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    cli.lock_run(cfg, "train_gating")
    gcfg = cfg.gating
    names = cli.split_names(args.experts) or [s for s in available_sources(cfg.out_dir) if s != "gating"]
    if not names:
        raise ArgseError(f"no exported expert logits under {cfg.out_dir / 'logits'}; run make experts first")
    if "gating" in names:
        raise ArgseError("the gate mixes experts; remove 'gating' from --experts")
    files = load_sources(cfg.out_dir, names, list(SPLITS))
    ref = files["tune"][0]
    for split in SPLITS:
        if files[split][0].splits_sha256 != ref.splits_sha256:
            raise ArgseError(
                f"logits file {files[split][0].path}: field 'splits_sha256' differs from {ref.path}; "
                f"export every split from the same run"
            )

    labels = {s: files[s][0].labels for s in SPLITS}
    logp = {s: torch.stack([F.log_softmax(f.calibrated.double(), dim=1) for f in files[s]]) for s in SPLITS}
    num_experts, num_classes = len(names), ref.num_classes
    info: dict = {"experts": names, "gate": gcfg.gate, "config": asdict(gcfg)}

    if gcfg.gate == "learned":
        feats = {s: gating_features(logp[s].exp(), gcfg.top_k, gcfg.features == "rich+posteriors") for s in SPLITS}
        label_logp = {
            s: logp[s].gather(2, labels[s].view(1, -1, 1).expand(num_experts, -1, 1)).squeeze(2).t().float()
            for s in SPLITS
        }
        gate, fit_info = train_gate(feats, label_logp, labels, num_classes, gcfg)
        with torch.no_grad():
            log_w = {s: F.log_softmax(gate(feats[s]), dim=1).double() for s in SPLITS}
        info |= fit_info | {"feature_dim": feats["tune"].shape[1], "features": gcfg.features}
        io.save_tensors(
            cfg.out_dir / "gating" / "gate.safetensors",
            gate.state_dict(),
            {"format": "argse.gate/1", "experts": ",".join(names)},
        )
    else:
        if gcfg.gate == "uniform":
            w = torch.full((num_experts,), 1.0 / num_experts, dtype=torch.float64)
        else:
            if (
                len(gcfg.fixed_weights) != num_experts
                or min(gcfg.fixed_weights, default=-1) < 0
                or sum(gcfg.fixed_weights) <= 0
            ):
                raise ArgseError(
                    f"gating.fixed_weights must hold {num_experts} non-negative weights (one per expert: "
                    f"{', '.join(names)}), got {gcfg.fixed_weights}"
                )
            w = torch.tensor(gcfg.fixed_weights, dtype=torch.float64)
            w = w / w.sum()
        log_w = {s: w.clamp_min(1e-300).log().expand(len(labels[s]), -1) for s in SPLITS}

    for s in SPLITS:
        mix = mixture_log_probs(log_w[s], logp[s])
        f = files[s][0]
        write_logits(
            logits_path(cfg.out_dir, "gating", s),
            mix.float(),
            f.labels,
            f.indices,
            expert="gating",
            dataset=f.dataset,
            split=s,
            temperature=1.0,
            class_counts=f.class_counts,
            splits_sha256=f.splits_sha256,
            config={"experts": names, **asdict(gcfg)},
        )

    # Report on test: each expert, the uniform average, the gated mixture.
    counts = torch.tensor(ref.class_counts)
    groups = head_tail_groups(counts, cfg.data.tail_max_count)
    shots = shot_groups(counts, cfg.data.many_min_count, cfg.data.few_max_count)
    y = labels["test"]
    candidates = {n: logp["test"][i] for i, n in enumerate(names)}
    candidates["uniform"] = mixture_log_probs(
        torch.full((len(y), num_experts), -math.log(num_experts), dtype=torch.float64), logp["test"]
    )
    candidates[f"gating ({gcfg.gate})"] = mixture_log_probs(log_w["test"], logp["test"])
    reports = {}
    for name, lp in candidates.items():
        rep = classification_report(lp, y, counts, groups, shots)
        rep["nll"] = float(-lp.gather(1, y.view(-1, 1)).mean())
        reports[name] = rep
    weights = log_w["test"].exp()
    group_weights = {g: weights[groups.of_class[y] == k].mean(0).tolist() for k, g in enumerate(groups.names)}
    info |= {
        "test": reports,
        "mean_weight_by_group": {g: dict(zip(names, group_weights[g], strict=True)) for g in groups.names},
    }
    io.write_json(cfg.out_dir / "gating" / "gate.json", info)

    console = cli.console()
    table = Table(title=f"{cfg.name}: gating on test (%; NLL in nats)")
    for col in ("source", "acc", "balanced_acc", "head", "tail", "nll"):
        table.add_column(col, justify="right" if col != "source" else "left")
    for name, rep in reports.items():
        table.add_row(
            name, *(f"{100 * rep[c]:.2f}" for c in ("acc", "balanced_acc", "head", "tail")), f"{rep['nll']:.3f}"
        )
    console.print(table)
    wt = Table(title="mean gate weight per group (test)")
    wt.add_column("group")
    for n in names:
        wt.add_column(n, justify="right")
    for g in groups.names:
        wt.add_row(g, *(f"{v:.3f}" for v in group_weights[g]))
    console.print(wt)
    gate_files = "gate.json, gate.safetensors" if gcfg.gate == "learned" else "gate.json"
    console.print(f"gate: {cfg.out_dir / 'gating'}/ ({gate_files})")
    console.print(f"mixture logits: {logits_path(cfg.out_dir, 'gating', 'test').parent}/{{val,tune,test}}.safetensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
