"""Training the gate: from the experts' exported logits to the trained gate, its reports and the mixture
(written into the gate's stage by argse.stages.gate).

The gate trains on the gate part of ``tune`` (``gating.tune_fraction``); the rest of ``tune`` is left
for the rejectors that the evaluation fits, so no rejector is fitted on the samples that trained
the gate. Reads only logits files, one split at a time and a block of samples at a time (``network.FEATURE_ROWS``):
per split it holds the gate's features [N, F] and the experts' log-probabilities of the true labels [E, N], and,
for export, the mixture's [N, C] float32; never the experts' [E, N, C] (docs/gating.md#train_gating-memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from argse.config.sections import RunConfig
from argse.core.errors import ArgseError
from argse.data.groups import head_tail_groups, run_groups
from argse.data.logits import LogitsFile, SourceReader, log_prob_blocks
from argse.data.metrics import lt_weights, prediction_report
from argse.data.splits import tune_parts
from argse.gating import network
from argse.gating.network import (
    constant_weights,
    gating_features,
    mixture_log_probs,
    routing_stats,
    sample_weights,
    train_gate,
)
from argse.gating.selective_objective import train_selective_gate

SPLITS = ("tune", "val", "test")


@dataclass
class SplitData:
    """What the gate needs of one split, made a block of samples at a time from its experts' files."""

    files: list[LogitsFile]  # one per expert, logits left on disk
    label_logp: torch.Tensor  # [E, N] float64: each expert's log-probability of the true label
    feats: torch.Tensor | None = None  # [N, F] the gate's features (a learned gate only)
    probs: torch.Tensor | None = None  # [E, n, C] float64 posteriors of the rows a selective objective reads
    labels: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.labels = self.files[0].labels


def split_data(files: list[LogitsFile], cfg: RunConfig, kept_rows: torch.Tensor | None) -> SplitData:
    """Features and label log-probabilities of one split; with ``kept_rows`` (sorted positions), also those
    rows' posteriors [E, n, C], which the selective objectives hold.

    The results are allocated once and filled block by block: small tensors kept between a block's large
    temporaries would pin the freed heap below them, and the process would keep that memory."""
    gcfg, labels, e = cfg.gating, files[0].labels, len(files)
    label_logp, feats = torch.empty(e, len(labels), dtype=torch.float64), None
    probs = None if kept_rows is None else torch.empty(e, len(kept_rows), files[0].num_classes, dtype=torch.float64)
    for rows, logp in log_prob_blocks(files, network.FEATURE_ROWS):
        if gcfg.gate == "learned":
            block = gating_features(logp.exp(), gcfg.top_k, gcfg.features == "rich+posteriors")
            feats = torch.empty(len(labels), block.shape[1]) if feats is None else feats
            feats[rows] = block
        label_logp[:, rows] = logp.gather(2, labels[rows].view(1, -1, 1).expand(e, -1, 1)).squeeze(2)
        if probs is not None:
            a, b = torch.searchsorted(kept_rows, torch.tensor([rows.start, rows.stop])).tolist()
            probs[:, a:b] = logp[:, kept_rows[a:b] - rows.start].exp()
    return SplitData(files, label_logp, feats, probs)


def read_splits(cfg: RunConfig, reader: SourceReader) -> dict[str, SplitData]:
    """Every split of the reader's experts, checked as load_sources checks them, one split in memory at a time."""
    names, data = reader.sources, {}
    for s in SPLITS:
        files = [reader.read(n, s, rows_on_disk=True) for n in names]
        data[s] = split_data(files, cfg, posterior_rows(cfg, s, files[0].labels))
    return data


def posterior_rows(cfg: RunConfig, split: str, labels: torch.Tensor) -> torch.Tensor | None:
    """The rows whose posteriors a selective objective trains on (the gate part of tune, all of val), else None."""
    if cfg.gating.gate != "learned" or not cfg.gating.objective.startswith("selective_") or split == "test":
        return None
    return tune_parts(labels, cfg.gating.tune_fraction, cfg.seed)[0] if split == "tune" else torch.arange(len(labels))


def selective_gate(cfg, data: dict, feats: dict, labels: dict, counts: torch.Tensor):
    """The gate and its rules trained for the selective objective, under evaluate's test prior and groups."""
    groups = head_tail_groups(counts, cfg.data.tail_max_count)
    probs = {"tune": data["tune"].probs, "val": data["val"].probs}
    if cfg.evaluate.test_prior == "train":
        weights = {s: lt_weights(y, counts) for s, y in labels.items()}
    else:
        weights = {s: torch.ones(len(y), dtype=torch.float64) for s, y in labels.items()}
    return train_selective_gate(feats, probs, labels, weights, groups.of_class, groups.k, cfg.gating)


def learned_weights(
    cfg, data: dict[str, SplitData], gate_part: torch.Tensor, counts: torch.Tensor
) -> tuple[dict, dict, object]:
    """Train the gate on the gate part of tune; per-split log weights [N, E], info and the gate."""
    gcfg = cfg.gating
    feats = {s: d.feats for s, d in data.items()}
    label_logp = {s: d.label_logp.t().float() for s, d in data.items()}
    fit = {"tune": feats["tune"][gate_part], "val": feats["val"]}
    fit_labels = {"tune": data["tune"].labels[gate_part], "val": data["val"].labels}
    if gcfg.objective.startswith("selective_"):
        gate, rules, info = selective_gate(cfg, data, fit, fit_labels, counts)
        info = {"selective": info, "rules": rules}
    else:
        gate, info = train_gate(
            fit, {"tune": label_logp["tune"][gate_part], "val": label_logp["val"]}, fit_labels,
            data["tune"].files[0].num_classes, gcfg,
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


def mixture_logits(data: dict[str, SplitData], log_w: dict, split: str) -> torch.Tensor:
    """The mixture's log-probabilities [N, C] float32 on ``split``, a block of samples at a time."""
    f = data[split].files[0]
    mixture = torch.empty(len(f.labels), f.num_classes, dtype=torch.float32)
    for rows, logp in log_prob_blocks(data[split].files, network.FEATURE_ROWS):
        mixture[rows] = mixture_log_probs(log_w[split][rows], logp)  # float64 rounded to float32, as .float()
    return mixture


def mixture_reports(cfg, names, test: SplitData, log_w, const_w, counts) -> dict[str, dict]:
    """Each expert, the uniform average, the best constant mixture and the gate, on test.

    A block of samples at a time: each candidate's argmax and log-probability of the label are all a report needs.
    """
    groups, shots = run_groups(counts, cfg.data)
    y, e = test.labels, len(names)
    candidates: dict[str, torch.Tensor | None] = dict.fromkeys(names)  # an expert: its own log-probabilities
    candidates["uniform"] = torch.full((len(y), e), -math.log(e), dtype=torch.float64)
    candidates["constant (fitted)"] = const_w.log().expand(len(y), -1)
    candidates[f"gating ({cfg.gating.gate})"] = log_w["test"]
    preds = {name: torch.empty(len(y), dtype=torch.int64) for name in candidates}  # filled in place: see split_data
    label_logp = {name: torch.empty(len(y), 1, dtype=torch.float64) for name in candidates}
    for rows, lp in log_prob_blocks(test.files, network.FEATURE_ROWS):
        for i, (name, log_weights) in enumerate(candidates.items()):
            mix = lp[i] if log_weights is None else mixture_log_probs(log_weights[rows], lp)
            preds[name][rows] = mix.argmax(dim=1)
            label_logp[name][rows] = mix.gather(1, y[rows].view(-1, 1))
    reports = {}
    for name in candidates:
        rep = prediction_report(preds[name], y, counts, groups, shots)
        rep["nll"] = float(-label_logp[name].mean())
        reports[name] = rep
    return reports


@dataclass
class GatingRun:
    """What training the gate produced: gate.json's content, the network (a learned gate), the per-sample log
    weights of every split and the experts' split data the mixture is made from."""

    names: list[str]
    info: dict  # gate.json: settings, samples, test reports, constant weights, routing
    network: torch.nn.Module | None
    log_w: dict[str, torch.Tensor]
    data: dict[str, SplitData]

    @property
    def reports(self) -> dict[str, dict]:
        return self.info["test"]

    @property
    def routing(self) -> dict[str, dict]:
        return self.info["routing"]

    def mixture(self, split: str) -> torch.Tensor:
        return mixture_logits(self.data, self.log_w, split)


def sample_record(cfg: RunConfig, names: list[str], tune: LogitsFile, gate_part, rejector_part) -> dict:
    """gate.json's settings, and which samples of tune the gate trained on and which it left to the rejectors."""
    return {
        "experts": names, "gate": cfg.gating.gate, "objective": cfg.gating.objective, "config": cfg.gating.model_dump(),
        "test_prior": cfg.evaluate.test_prior,
        "samples": {"gate_trained_on": {"split": "tune", "indices": tune.indices[gate_part].tolist()},
                    "left_for_rejectors": {"split": "tune", "indices": tune.indices[rejector_part].tolist()}},
    }  # fmt: skip


def constant_baseline(cfg: RunConfig, tune: SplitData, gate_part: torch.Tensor) -> torch.Tensor:
    """The baseline a gate must beat to be routing: one weight vector for every sample, fitted on its data."""
    y_gate, balanced = tune.labels[gate_part], cfg.gating.objective != "nll"
    num_classes = tune.files[0].num_classes
    return constant_weights(tune.label_logp[:, gate_part].t(), sample_weights(y_gate, num_classes, balanced))


def run(cfg: RunConfig, reader: SourceReader) -> GatingRun:
    """Train (or set) the gate over the reader's experts; its reports and the mixture of every split."""
    names = reader.sources
    data = read_splits(cfg, reader)  # every file is checked, every row included, before anything is written
    labels = {s: d.labels for s, d in data.items()}
    counts = torch.tensor(data["tune"].files[0].class_counts)
    gate_part, rejector_part = tune_parts(labels["tune"], cfg.gating.tune_fraction, cfg.seed)
    info = sample_record(cfg, names, data["tune"].files[0], gate_part, rejector_part)
    if cfg.gating.gate == "learned":
        log_w, fit_info, gate = learned_weights(cfg, data, gate_part, counts)
        info |= fit_info
    else:
        log_w, gate = fixed_weights(cfg, names, {s: len(labels[s]) for s in SPLITS}), None
    const_w = constant_baseline(cfg, data["tune"], gate_part)
    group_of = head_tail_groups(counts, cfg.data.tail_max_count).sample_masks(labels["test"])
    routing = routing_stats(log_w["test"].exp(), group_of, names)
    reports = mixture_reports(cfg, names, data["test"], log_w, const_w, counts)
    info |= {"test": reports, "constant_weights": dict(zip(names, const_w.tolist(), strict=True)), "routing": routing}
    info["mean_weight_by_group"] = {g: {n: s["mean"] for n, s in r.items()} for g, r in routing.items()}
    return GatingRun(names, info, gate, log_w, data)
