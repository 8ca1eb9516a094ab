"""Narasimhan et al. (ICLR 2024)'s Table 2 for one config over seeds: training every method's models.

Each seed is a run of its own, ``<name>_seed<S>``, as in ``argse.reproduce``: it trains the config's
experts (the gate's team: ``ce`` for Chow and the plug-ins, ``logit_adjust`` for Chow [BCE],
``group_dro`` for Chow [DRO]) and the gate. CSS needs one model per rejection cost; each is the
``css`` expert of a run of its own, ``<name>_seed<S>_css<cost>``, with the same seed and data
config, hence the same long-tailed subset and splits (the tabulation checks their digests agree).
"""

from __future__ import annotations

import dataclasses

from argse import terminal
from argse.config import RunConfig, load_run_config
from argse.experts import pipeline as expert_pipeline
from argse.experts.base import load_recipe
from argse.experts.css import CSSExpert
from argse.gating import pipeline as gating_pipeline


def seed_configs(config: str | None, overrides: list[str], seeds: list[int]) -> list[RunConfig]:
    """One run config per seed, named ``<name>_seed<S>``; without seeds, the config as it is."""
    if not seeds:
        return [load_run_config(config, overrides)]
    base = load_run_config(config, overrides)
    return [load_run_config(config, [*overrides, f"seed={s}", f"name={base.name}_seed{s}"]) for s in seeds]


def css_costs(cfg: RunConfig) -> list[float]:
    """The CSS cost grid of this config: ``recipes.css.costs`` over experts/css.yaml."""
    return list(load_recipe(CSSExpert, cfg).costs)


def cost_tag(cost: float) -> str:
    """A cost as a run-name suffix: 0.85 -> 'css0.85'."""
    return f"css{cost:g}"


def css_config(cfg: RunConfig, cost: float) -> RunConfig:
    """The run that trains CSS at ``cost``: ``cfg``'s seed and data, expert ``css`` only."""
    recipes = dict(cfg.recipes)
    recipes["css"] = {**(recipes.get("css") or {}), "cost": cost}
    return dataclasses.replace(cfg, name=f"{cfg.name}_{cost_tag(cost)}", experts=["css"], recipes=recipes)


def train_all(cfgs: list[RunConfig], resume: bool = False) -> None:
    """Every seed's experts and gate, then CSS cost by cost over the seeds (a cut-short run still has
    every seed's experts, and the first costs of ``recipes.css.costs`` on every seed)."""
    console = terminal.console()
    for cfg in cfgs:
        expert_pipeline.run(cfg, cfg.experts, resume=resume)
        gating_pipeline.run(cfg, cfg.experts)
    for cost in css_costs(cfgs[0]):
        for cfg in cfgs:
            console.rule(f"{cfg.name}: CSS at cost {cost:g}")
            expert_pipeline.run(css_config(cfg, cost), ["css"], resume=resume)
