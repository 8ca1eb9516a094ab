"""Narasimhan et al. (ICLR 2024)'s Table 2 for one config over seeds: training every method's models.

Each seed is a run of its own, ``<name>_seed<S>``, as in ``argse.reproduce``: it trains the config's
experts (the gate's team: ``ce`` for Chow and the plug-ins, ``logit_adjust`` for Chow [BCE],
``group_dro`` for Chow [DRO]) and the gate. CSS needs one model per rejection cost; each is the
``css`` expert of a run of its own, ``<name>_seed<S>_css<cost>``, with the same seed and data
config, hence the same long-tailed subset and splits (the tabulation checks their digests agree).
Chow [DRO]'s eta and C are picked as the paper's App. F.3 does: one ``group_dro`` model per pair of
``recipes.group_dro.grid_steps`` x ``grid_adjustments`` (the pair of the team's own recipe is the team's
model; every other is a run ``<name>_seed<S>_dro<eta>_<C>``), and Chow [DRO] is measured on the one of
lowest worst-group error on ``val`` under the training prior.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from argse.config.loading import load_run_config
from argse.config.schema import changed
from argse.config.sections import RunConfig
from argse.core import terminal
from argse.core.errors import ArgseError
from argse.data.groups import Groups, head_tail_groups
from argse.data.logits import LogitsFile
from argse.data.metrics import lt_weights, source_reports
from argse.experts.base import load_recipe
from argse.experts.css import CSSExpert, css_abstains
from argse.experts.group_dro import GroupDROExpert
from argse.selective.rejectors import aurc
from argse.selective.sweep import AURC_RANGES, aurc_key
from argse.selective.views import group_rates
from argse.stages import experts as expert_stages
from argse.stages.evaluation import evaluate
from argse.stages.gate import build_gate, reader_of
from argse.stages.run import RunStages


def parse_seeds(text: str | None) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]; anything else (``0,00`` counts one seed twice) is one sentence."""
    names = [s.strip() for s in (text or "").split(",") if s.strip()]
    seeds = [int(s) for s in names if s.isascii() and s.isdigit()]
    if len(seeds) != len(names) or len(set(seeds)) != len(seeds):
        raise ArgseError(
            f"--seeds must be distinct non-negative integers separated by commas, e.g. 0,1,2; got {text!r}"
        )
    return seeds


def seed_configs(config: str | None, overrides: list[str], seeds: list[int]) -> list[RunConfig]:
    """One run config per seed, named ``<name>_seed<S>``; without seeds, the config as it is."""
    if not seeds:
        return [load_run_config(config, overrides)]
    base = load_run_config(config, overrides)
    return [load_run_config(config, [*overrides, f"seed={s}", f"name={base.name}_seed{s}"]) for s in seeds]


def css_costs(cfg: RunConfig) -> list[float]:
    """The CSS cost grid of this config: ``recipes.css.costs`` over experts/css.yaml. Each cost names a run of its
    own (``cost_tag``), so two costs that name the same run are refused: one would be read for the other."""
    costs = list(load_recipe(CSSExpert, cfg).costs)
    tags = [cost_tag(c) for c in costs]
    twice = next((t for t in tags if tags.count(t) > 1), None)
    if twice is not None:
        same = [c for c, t in zip(costs, tags, strict=True) if t == twice]
        raise ArgseError(
            f"recipes.css.costs holds {' and '.join(map(repr, same))}, which name the same run ({twice}); "
            f"give costs that differ in their first 6 significant digits"
        )
    return costs


def cost_tag(cost: float) -> str:
    """A cost as a run-name suffix: 0.85 -> 'css0.85'."""
    return f"css{cost:g}"


def css_config(cfg: RunConfig, cost: float) -> RunConfig:
    """The run that trains CSS at ``cost``: ``cfg``'s seed and data, expert ``css`` only."""
    recipes = dict(cfg.recipes)
    recipes["css"] = {**(recipes.get("css") or {}), "cost": cost}
    return changed(cfg, name=f"{cfg.name}_{cost_tag(cost)}", experts=["css"], recipes=recipes)


def dro_grid(cfg: RunConfig) -> list[tuple[float, float]]:
    """Chow [DRO]'s (eta, C) grid, the team's own pair first (it is picked on a tie)."""
    r = load_recipe(GroupDROExpert, cfg)
    own = (r.dro_step, r.dro_adjustment)
    pairs = list(dict.fromkeys([own, *((eta, c) for eta in r.grid_steps for c in r.grid_adjustments)]))
    tags = [f"{eta:g}_{c:g}" for eta, c in pairs]
    twice = next((t for t in tags if tags.count(t) > 1), None)
    if twice is not None:
        raise ArgseError(
            f"recipes.group_dro's grid (with dro_step {own[0]!r}, dro_adjustment {own[1]!r}) holds two pairs that name "
            f"the same run (dro{twice}); give values that differ in their first 6 significant digits"
        )
    return pairs


def dro_config(cfg: RunConfig, step: float, adjustment: float) -> RunConfig:
    """The run holding the group_dro model at (eta, C): ``cfg`` itself for the team's pair, else a run of its own
    with ``cfg``'s seed and data, expert ``group_dro`` only."""
    own = load_recipe(GroupDROExpert, cfg)
    if (step, adjustment) == (own.dro_step, own.dro_adjustment):
        return cfg
    recipes = dict(cfg.recipes)
    recipes["group_dro"] = {**(recipes.get("group_dro") or {}), "dro_step": step, "dro_adjustment": adjustment}
    return changed(cfg, name=f"{cfg.name}_dro{step:g}_{adjustment:g}", experts=["group_dro"], recipes=recipes)


def worst_group_error(f: LogitsFile, tail_max_count: int) -> float:
    """The classifier's worst-group error on ``f``'s split under the training prior (nothing rejected)."""
    labels = f.labels
    counts = torch.tensor(f.class_counts)
    groups = head_tail_groups(counts, tail_max_count)
    correct = (f.logits.argmax(1) == labels).numpy()
    accepted = np.ones_like(correct)
    err, _, _ = group_rates(accepted, correct, groups.class_group()[labels.numpy()], groups.k,
                            lt_weights(labels, counts).numpy())  # fmt: skip
    return float(err.max())


def pick_dro(cfg: RunConfig, splits_sha256: str) -> tuple[RunConfig, list[dict[str, float]]]:
    """The run whose group_dro has the lowest worst-group error on val, and every grid point's error."""
    points = []
    for step, adjustment in dro_grid(cfg):
        run = dro_config(cfg, step, adjustment)
        train = (f"python -m argse.train_experts --experts group_dro --set name={run.name} --set seed={cfg.seed} --set "
                 f"recipes.group_dro.dro_step={step:g} --set recipes.group_dro.dro_adjustment={adjustment:g} "
                 f"with the table's --config and --set")  # fmt: skip
        try:
            f = reader_of(RunStages(run), ["group_dro"], ["val"]).read("group_dro", "val")
        except ArgseError:
            raise ArgseError(
                f"Chow [DRO]'s grid point eta {step:g}, C {adjustment:g} has no trained model (run {run.name}): run "
                f"argse.table2 without --skip-training, or {train}"
            ) from None
        if f.splits_sha256 != splits_sha256:
            raise ArgseError(
                f"{f.path} was exported from other splits than {cfg.name} (splits_sha256 differs); retrain it: {train}"
            )
        points.append({"eta": step, "C": adjustment, "val_worst": worst_group_error(f, cfg.data.tail_max_count)})
    best = min(range(len(points)), key=lambda i: points[i]["val_worst"])  # the first on a tie: the team's pair
    return dro_config(cfg, points[best]["eta"], points[best]["C"]), points


def train_all(cfgs: list[RunConfig], rebuild: bool = False) -> None:
    """Every seed's experts and gate, then Chow [DRO]'s grid, then CSS cost by cost over the seeds (a cut-short
    run still has every seed's experts, and the first costs of ``recipes.css.costs`` on every seed); stages
    that exist are found, not trained again."""
    console = terminal.console()
    for cfg in cfgs:
        expert_stages.run(cfg, cfg.experts, rebuild=rebuild)
        build_gate(cfg, console)
    for cfg in cfgs:
        for step, adjustment in dro_grid(cfg)[1:]:
            console.rule(f"{cfg.name}: group_dro at eta {step:g}, C {adjustment:g}")
            expert_stages.run(dro_config(cfg, step, adjustment), ["group_dro"], rebuild=rebuild)
    for cost in css_costs(cfgs[0]):
        for cfg in cfgs:
            console.rule(f"{cfg.name}: CSS at cost {cost:g}")
            expert_stages.run(css_config(cfg, cost), ["css"], rebuild=rebuild)


def css_file(cfg: RunConfig, cost: float) -> LogitsFile:
    """The test logits of the CSS model at ``cost`` of seed run ``cfg``, from its stage."""
    run = css_config(cfg, cost)
    return reader_of(RunStages(run), ["css"], ["test"]).read("css", "test")


# ---------------------------------------------------------------- tabulation
# Table 2's rows: (method, the expert it is measured on, the rejector fitted on that expert's logits).
# CSS has no rejector to fit: each of its models decides by itself (css_points).
METHODS = [
    ("Chow", "ce", "chow"),
    ("CSS", "css", None),
    ("Chow [BCE]", "logit_adjust", "chow"),
    ("Chow [DRO]", "group_dro", "chow"),
    ("Plug-in [Balanced]", "ce", "plugin_balanced"),
    ("Plug-in [Worst]", "ce", "plugin_worst"),
]
# argse's extra rows: the gated team (the config's experts) under each rejector.
TEAM_ROWS = [
    ("gated team, Chow", "gating", "chow"),
    ("gated team, Plug-in [Balanced]", "gating", "plugin_balanced"),
    ("gated team, Plug-in [Worst]", "gating", "plugin_worst"),
]
# Both fitting protocols under the paper's test prior (the training label distribution); CSS fits nothing.
VIEWS = [("train", "paper"), ("train", "argse")]
SPAN = "0-0.8"  # the paper's rejection rates (Figure 3)
METRICS = ("balanced", "worst_group")


@dataclass
class SeedTable:
    """One seed's AURCs per view and row label, CSS's points per cost, each model's test report, and the
    recipe each model's logits were exported with (as the logits file records it)."""

    aurcs: dict[tuple[str, str], dict[str, dict[str, float]]]
    css: list[dict[str, float]]
    reports: dict[str, dict[str, float]]
    recipes: dict[str, dict] = dataclasses.field(default_factory=dict)
    # per view and non-CSS row: curve_metrics' figures, their bootstrap intervals and draws
    # ({"figures": {reduction: {figure: value}}, "intervals": ..., "draws": ...})
    figures: dict[tuple[str, str], dict[str, dict]] = dataclasses.field(default_factory=dict)
    # Chow [DRO]'s grid: per (eta, C), the group_dro model's worst-group error on val; the lowest is measured
    dro: list[dict[str, float]] = dataclasses.field(default_factory=list)


def check_team(cfg: RunConfig) -> None:
    """Table 2's methods are measured on ce, logit_adjust and group_dro: the config must train them."""
    missing = [e for e in ("ce", "logit_adjust", "group_dro") if e not in cfg.experts]
    if missing:
        raise ArgseError(
            f"Table 2 measures Chow and the plug-ins on ce, Chow [BCE] on logit_adjust and Chow [DRO] on group_dro; "
            f"the config's experts lack {', '.join(missing)}: set experts=[ce,logit_adjust,group_dro]"
        )


def view_config(cfg: RunConfig, prior: str, protocol: str) -> RunConfig:
    return changed(cfg, evaluate=changed(cfg.evaluate, test_prior=prior, protocol=protocol))


def table_aurcs(
    cfg: RunConfig, prior: str, protocol: str, dro_run: RunConfig | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """Balanced and worst-group AURC of every non-CSS row in one view, through argse.selective.sweep, and each row's
    further figures with their bootstrap intervals and draws. Chow [DRO] is measured on ``dro_run``'s group_dro
    (default: ``cfg``'s)."""
    rows = [r for r in METHODS + TEAM_ROWS if r[2] is not None]
    # Only the rejectors each (run, source) needs: the plug-ins on ce and the gate, Chow on all.
    wanted: dict[tuple[str, str], list[str]] = {}
    for _, source, method in rows:
        run = dro_run if source == "group_dro" and dro_run is not None else cfg
        wanted.setdefault((run.name, source), []).append(method)
    runs = {cfg.name: cfg} | ({dro_run.name: dro_run} if dro_run is not None else {})
    aurcs: dict[tuple[str, str], dict[str, float]] = {}
    figures: dict[tuple[str, str], dict] = {}
    for run_name in runs:
        by_methods: dict[tuple[str, ...], list[str]] = {}
        for (name, source), methods in wanted.items():
            if name == run_name:
                by_methods.setdefault(tuple(dict.fromkeys(methods)), []).append(source)
        for methods, sources in by_methods.items():
            ev = evaluate(view_config(runs[run_name], prior, protocol), sources, list(methods))
            aurcs |= ev.aurcs
            figures |= {k: {"figures": ev.figures[k], "intervals": ev.intervals[k], "draws": ev.draws[k]}
                        for k in ev.aurcs}  # fmt: skip
    return (
        {label: pick(aurcs[(source, method)]) for label, source, method in rows},
        {label: figures[(source, method)] for label, source, method in rows},
    )


def pick(aurcs: dict[str, float]) -> dict[str, float]:
    """Balanced and worst-group AURC over the target rates (the headline) and over the rates reached on test."""
    out = {m: aurcs[aurc_key(f"{m}_error", SPAN)] for m in METRICS}
    return out | {f"{m}@reached": aurcs[aurc_key(f"{m}_error", SPAN, reached=True)] for m in METRICS}


def css_point(f: LogitsFile, groups: Groups, prior: str) -> dict[str, float]:
    """One CSS model on ``test``: its own decision (abstain where the abstain output wins), no threshold fitted."""
    accepted = ~css_abstains(f.logits).numpy()
    labels = f.labels.numpy()
    correct = f.logits.argmax(1).numpy() == labels
    weight = lt_weights(f.labels, torch.tensor(f.class_counts)).numpy() if prior == "train" else None
    err, _, joint = group_rates(accepted, correct, groups.class_group()[labels], groups.k, weight)
    return {
        "rejection_rate": max(0.0, 1.0 - float(joint.sum())),  # no "-0.0000" from rounding
        "balanced": float(err.mean()),
        "worst_group": float(err.max()),
    }


def css_curve(cfg: RunConfig, splits_sha256: str, prior: str) -> list[dict[str, float]]:
    """CSS's trade-off on ``test``: one point per cost of the grid, each from the run that trained that cost."""
    points = []
    for cost in css_costs(cfg):
        run = css_config(cfg, cost)
        f = css_file(cfg, cost)
        if f.splits_sha256 != splits_sha256:
            raise ArgseError(
                f"{f.path} was exported from other splits than {cfg.name} (splits_sha256 differs); retrain it: "
                f"python -m argse.train_experts --experts css --set name={run.name} --set seed={cfg.seed} "
                f"--set recipes.css.cost={cost:g}"
            )
        groups = head_tail_groups(torch.tensor(f.class_counts), cfg.data.tail_max_count)
        points.append({"cost": cost, **css_point(f, groups, prior)})
    return points


def css_aurcs(points: list[dict[str, float]]) -> dict[str, float]:
    """AURC of CSS's points over the paper's rates: the rates its models reach, linearly interpolated, the
    curve held at its end points outside them (selective.aurc, as every other curve)."""
    lo, hi = AURC_RANGES[SPAN]
    rates = [p["rejection_rate"] for p in points]
    out = {m: aurc(rates, [p[m] for p in points], lo, hi) for m in METRICS}
    return out | {f"{m}@reached": v for m, v in out.items()}  # CSS has no target rates: only reached ones


def tabulate_seed(cfg: RunConfig) -> SeedTable:
    """Every Table-2 row of one seed's run, in every view, from its exported logits (no training)."""
    check_team(cfg)
    names = [*cfg.experts, "gating"]
    reader = reader_of(RunStages(cfg), names, ["test"])
    test = [reader.read(n, "test") for n in names]
    dro_run, dro = pick_dro(cfg, test[0].splits_sha256)
    # Chow [DRO]'s model is the picked one: its accuracies and recipe are the ones the page gives
    picked = reader_of(RunStages(dro_run), ["group_dro"], ["test"]).read("group_dro", "test")
    test = [picked if f.expert == "group_dro" else f for f in test]
    reports = source_reports(test, cfg.data)
    aurcs, css, figures = {}, [], {}
    for prior, protocol in VIEWS:
        aurcs[(prior, protocol)], figures[(prior, protocol)] = table_aurcs(cfg, prior, protocol, dro_run)
        points = css_curve(cfg, test[0].splits_sha256, prior)
        aurcs[(prior, protocol)]["CSS"] = css_aurcs(points)
        css = css or points
    recipes = {f.expert: f.config for f in test if f.expert != "gating"}
    recipes["css"] = css_file(cfg, css_costs(cfg)[0]).config
    return SeedTable(aurcs, css, reports, recipes, figures, dro)
