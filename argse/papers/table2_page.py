"""The Table-2 results page: argse's AURCs over seeds beside Narasimhan et al. (ICLR 2024)'s own.

The paper's figures are read from its Table 2 (p. 8); its ± are 95% confidence intervals over 5 trials
(App. F, "We report 95% confidence intervals in Table 2"). argse's ± is the standard deviation over seeds.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from argse.config.loading import BUILTIN_RECIPES
from argse.config.sections import RunConfig
from argse.core import provenance, storage
from argse.experts.css import PAPER_COSTS
from argse.experts.group_dro import GroupDRORecipe
from argse.papers.narasimhan2024 import METHODS, SPAN, TEAM_ROWS, VIEWS, SeedTable, css_costs
from argse.reports.pages import percent
from argse.reports.uncertainty import cell, paired
from argse.training import TrainRecipe

PAPER = "Narasimhan et al., Learning to Reject Meets Long-tail Learning, ICLR 2024, Table 2 (p. 8)"
PAPER_RECIPES = {
    "CIFAR-100-LT": "CIFAR ResNet-32, SGD lr 0.4, batch 128, 256 epochs (App. F.1, Table 3)",
    "ImageNet-LT": "ResNet-50, SGD lr 0.4 cosine, batch 512, 200 epochs (App. F.1, Table 3)",
    "iNaturalist 2018": "ResNet-50, SGD lr 0.4 cosine, batch 1024, 200 epochs (App. F.1, Table 3)",
}
# (balanced AURC, its 95% CI, worst-group AURC, its 95% CI) per method, as printed in Table 2.
PAPER_TABLE2 = {
    "CIFAR-100-LT": {
        "Chow": (0.509, 0.002, 0.883, 0.007),
        "CSS": (0.483, 0.002, 0.785, 0.003),
        "Chow [BCE]": (0.359, 0.017, 0.570, 0.030),
        "Chow [DRO]": (0.325, 0.004, 0.333, 0.003),
        "Plug-in [Balanced]": (0.292, 0.006, 0.416, 0.015),
        "Plug-in [Worst]": (0.287, 0.008, 0.321, 0.018),
    },
    "ImageNet-LT": {
        "Chow": (0.409, 0.003, 0.685, 0.007),
        "CSS": (0.526, 0.002, 0.784, 0.003),
        "Chow [BCE]": (0.213, 0.001, 0.274, 0.003),
        "Chow [DRO]": (0.197, 0.001, 0.211, 0.004),
        "Plug-in [Balanced]": (0.205, 0.001, 0.248, 0.001),
        "Plug-in [Worst]": (0.198, 0.001, 0.213, 0.004),
    },
    "iNaturalist 2018": {
        "Chow": (0.131, 0.004, 0.162, 0.004),
        "CSS": (0.200, 0.005, 0.246, 0.006),
        "Chow [BCE]": (0.111, 0.003, 0.114, 0.003),
        "Chow [DRO]": (0.110, 0.001, 0.117, 0.002),
        "Plug-in [Balanced]": (0.108, 0.003, 0.118, 0.004),
        "Plug-in [Worst]": (0.108, 0.001, 0.113, 0.002),
    },
}


def paper_dataset(cfg: RunConfig) -> str | None:
    """Which of the paper's datasets ``cfg`` is, or None: CIFAR-100-LT at IF 100, or Liu et al.'s list files."""
    d = cfg.data
    if d.dataset == "cifar100_lt" and d.imbalance_factor == 100:
        return "CIFAR-100-LT"
    train_list = str((d.sections.get("list_lt") or {}).get("train_list", ""))
    if d.dataset == "list_lt" and Path(train_list).name.startswith("ImageNet_LT"):
        return "ImageNet-LT"
    if d.dataset == "list_lt" and Path(train_list).name.startswith("iNaturalist18"):
        return "iNaturalist 2018"
    return None


def mean_sd(values: list[float]) -> str:
    """'mean ± standard deviation' over seeds (just the value for one seed)."""
    m = sum(values) / len(values)
    if len(values) == 1:
        return f"{m:.4f}"
    sd = math.sqrt(sum((x - m) ** 2 for x in values) / (len(values) - 1))
    return f"{m:.4f} ± {sd:.4f}"


def mean(tables: list[SeedTable], view, label: str, metric: str) -> float:
    return sum(t.aurcs[view][label][metric] for t in tables) / len(tables)


def aurc_table(tables: list[SeedTable], view: tuple[str, str], dataset: str | None) -> str:
    """Table 2's layout: methods as rows, balanced and worst-group AURC (over seeds: mean ± sd; one seed: with its
    95% bootstrap interval over test); the paper's beside when it has them."""
    head = "| method | measured on | balanced AURC | worst-group AURC | balanced, rates reached | worst-group, rates reached |"
    rule = "|---|---|---|---|---|---|"
    if dataset:
        head += f" paper: balanced ({dataset}) | paper: worst-group ({dataset}) |"
        rule += "---|---|"
    lines = [head, rule]
    for label, source, method in METHODS + TEAM_ROWS:
        on = "css (one model per cost)" if method is None else f"{source}, rejector {method}"
        keys = ("balanced", "worst_group", "balanced@reached", "worst_group@reached")
        cells = [mean_sd([t.aurcs[view][label][m] for t in tables]) for m in keys]
        bounds = tables[0].figures.get(view, {}).get(label, {}).get("intervals", {})
        if len(tables) == 1 and bounds:  # one seed: the headline AURCs with their bootstrap interval over test
            cells[:2] = [cell(tables[0].aurcs[view][label][m], bounds[f"{m}_error"]["aurc"]) for m in keys[:2]]
        if dataset:
            paper = PAPER_TABLE2[dataset].get(label)
            cells += [f"{paper[0]:.3f} ± {paper[1]:.3f}", f"{paper[2]:.3f} ± {paper[3]:.3f}"] if paper else ["", ""]
        lines.append(f"| {label} | {on} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def orderings(tables: list[SeedTable], view: tuple[str, str]) -> list[str]:
    """The paper's claims about Table 2 (§6), checked on seed means, each with its numbers. The paper states the
    same two for all three datasets: the plug-ins are "substantially better than both Chow's rule and the CSS
    baseline", and "comparable to or better than" Chow [BCE] and Chow [DRO]. It claims no ranking among the
    best rows (its own ImageNet-LT and iNaturalist columns put Chow [DRO] or Chow [BCE] first on some)."""

    def m(label: str, metric: str) -> float:
        return mean(tables, view, label, metric)

    out = []
    for plugin, metric in (("Plug-in [Balanced]", "balanced"), ("Plug-in [Worst]", "worst_group")):
        name = metric.replace("_", "-")
        for baseline in ("Chow", "CSS"):
            ok = m(plugin, metric) < m(baseline, metric)
            out.append(f"- {'PASS' if ok else 'FAIL'}: {plugin} below {baseline} on {name} AURC "
                       f"({m(plugin, metric):.4f} vs {m(baseline, metric):.4f})")  # fmt: skip
        for variant in ("Chow [BCE]", "Chow [DRO]"):
            diff = m(plugin, metric) - m(variant, metric)
            bounds = paired_bounds(tables[0], view, plugin, variant, metric)
            ok = diff <= 0 if bounds is None else bounds[0] <= 0  # worse only beyond the resampling noise fails
            how = "" if bounds is None else f", seed-0 paired 95% interval [{bounds[0]:+.4f}, {bounds[1]:+.4f}]"
            out.append(f"- {'PASS' if ok else 'FAIL'}: {plugin} comparable to or better than {variant} on {name} "
                       f"AURC (difference {diff:+.4f}{how})")  # fmt: skip
    return out


def paired_bounds(table: SeedTable, view, a: str, b: str, metric: str) -> tuple[float, float] | None:
    """The paired bootstrap interval of row a's AURC less row b's on one seed's test set, or None without draws."""
    rows = table.figures.get(view, {})
    reduction = f"{metric}_error"
    if a not in rows or b not in rows or not rows[a]["draws"] or not rows[b]["draws"]:
        return None
    return paired(rows[a]["draws"][reduction]["aurc"], rows[b]["draws"][reduction]["aurc"], 0.95)


def css_markdown(tables: list[SeedTable]) -> str:
    """CSS's points on test per cost: the rejection rate each model reaches and its errors, mean ± sd."""
    lines = ["| cost c | rejection rate | balanced error | worst-group error |", "|---|---|---|---|"]
    for i, point in enumerate(tables[0].css):
        cells = [mean_sd([t.css[i][k] for t in tables]) for k in ("rejection_rate", "balanced", "worst_group")]
        lines.append(f"| {point['cost']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def dro_markdown(tables: list[SeedTable], seeds: list[int]) -> str:
    """Chow [DRO]'s grid (App. F.3): each (eta, C) model's worst-group error on val per seed, the pick marked."""
    lines = ["| eta | C | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|---|" + "---|" * len(seeds)]
    for i, point in enumerate(tables[0].dro):
        cells = []
        for t in tables:
            picked = min(range(len(t.dro)), key=lambda j: t.dro[j]["val_worst"])  # pick_dro's choice
            cells.append(f"{t.dro[i]['val_worst']:.4f}" + (" (picked)" if i == picked else ""))
        lines.append(f"| {point['eta']:g} | {point['C']:g} | " + " | ".join(cells) + " |")
    return ("Worst-group error on val under the training prior, nothing rejected; Chow [DRO] is measured on each "
            "seed's lowest (the team's own pair, listed first, on a tie). The gate mixes the team's own pair.\n\n"
            + "\n".join(lines) + "\n")  # fmt: skip


def accuracy_markdown(tables: list[SeedTable]) -> str:
    """Each model's test accuracy without rejection (%, balanced test split), mean ± sd over seeds."""
    keys = [("balanced_acc", "balanced"), ("head", "head"), ("tail", "tail")]
    lines = ["| model | " + " | ".join(k[1] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for name in tables[0].reports:
        cells = [mean_sd([100 * t.reports[name][k] for t in tables]) for k, _ in keys]
        if len(tables) == 1:  # one seed: each accuracy with its bootstrap interval over test
            cells = [percent(tables[0].reports[name], k) for k, _ in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def recipes_markdown(recipes: dict[str, dict]) -> str:
    """The schedule each model ran, as its exported logits record it (css: the first cost's run)."""
    head = "| model | epochs | batch | lr | warm-up | decay | weight decay | checkpoint exported | own settings |"
    lines = [head, "|---|" + "---|" * 8]
    base = set(TrainRecipe.model_fields) | {"seed", "checkpoint"}
    for name, r in recipes.items():
        if "epochs" not in r:  # logits written outside train_experts (a study, a test) record no recipe
            lines.append(f"| {name} | " + " | ".join(["-"] * 8) + " |")
            continue
        decay = (
            "cosine"
            if r["schedule"] == "cosine"
            else f"x{r['gamma']:g} at {', '.join(map(str, r['milestones'])) or '-'}"
        )
        own = ", ".join(f"{k} {v}" for k, v in r.items() if k not in base)
        # before recipes named their checkpoint, every expert exported its best-validation epoch
        lines.append(
            f"| {name} | {r['epochs']} | {r['batch_size']} | {r['lr']:g}{' Nesterov' if r['nesterov'] else ''} | "
            f"{r['warmup_epochs']} | {decay} | {r['weight_decay']:g} | {r.get('checkpoint', 'best_val')} | {own or '-'} |"
        )
    return "\n".join(lines) + "\n"


def figures_markdown(table: SeedTable, view: tuple[str, str], level: float) -> str:
    """One seed's further figures of every non-CSS row in ``view``, each with its bootstrap interval."""
    rows = table.figures.get(view, {})
    if not rows:
        return ""
    first = next(iter(rows.values()))["figures"]
    names = [(red, n) for red in first for n in first[red] if n in ("augrc", "e_aurc", "risk@coverage=1")]
    head = [f"{n} ({red.replace('_error', '').replace('_group', '')})" for red, n in names]
    lines = ["| method | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for label, f in rows.items():
        lines.append(f"| {label} | " + " | ".join(cell(f["figures"][r][n], f["intervals"].get(r, {}).get(n))
                                                 for r, n in names) + " |")  # fmt: skip
    return f"Each cell: value [{100 * level:g}% bootstrap interval over test].\n\n" + "\n".join(lines) + "\n"


def protocols_markdown(table: SeedTable, level: float) -> str:
    """argse's protocol against the paper's on the same rows, one seed: the AURC difference with its paired
    bootstrap interval (both views resample test alike: same labels, same evaluate.seed)."""
    paper, ours = table.figures.get(("train", "paper"), {}), table.figures.get(("train", "argse"), {})
    lines = []
    for label in (x for x in ours if x in paper and ours[x]["draws"]):
        cells = []
        for red in ("balanced_error", "worst_group_error"):
            d = ours[label]["figures"][red]["aurc"] - paper[label]["figures"][red]["aurc"]
            lo, hi = paired(ours[label]["draws"][red]["aurc"], paper[label]["draws"][red]["aurc"], level)
            cells.append(f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]" + ("*" if lo > 0 or hi < 0 else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = "| method | balanced AURC, argse − paper | worst-group AURC, argse − paper |\n|---|---|---|\n"
    return (f"Paired over the same {100 * level:g}% bootstrap resamples of test (* where the interval excludes 0); "
            f"negative: argse's protocol is lower.\n\n" + head + "\n".join(lines) + "\n")  # fmt: skip


# Fields a seed may differ in by design: its seed, and Chow [DRO]'s eta and C, picked on each seed's val.
PER_SEED = {"seed", "dro_step", "dro_adjustment"}


def recipes_across_seeds(tables: list[SeedTable], seeds: list[int]) -> str:
    """Whether every seed's models ran the first seed's recipes (seed, and group_dro's eta and C picked on val,
    aside), as their logits record them; else which model differs where."""
    first = {m: {k: v for k, v in r.items() if k not in PER_SEED} for m, r in tables[0].recipes.items()}
    differ = []
    for seed, t in zip(seeds[1:], tables[1:], strict=True):
        for model, recipe in t.recipes.items():
            own = {k: v for k, v in recipe.items() if k not in PER_SEED}
            keys = sorted(
                k for k in own.keys() | first.get(model, {}).keys() if own.get(k) != first.get(model, {}).get(k)
            )
            if keys:
                differ.append(f"seed {seed}, {model}: {', '.join(keys)}")
    if len(tables) == 1:
        return ""
    if not differ:
        return ("Every seed's models ran these recipes, only the seed (and group_dro's eta and C, picked on each "
                "seed's val) differing (each seed's logits record them).\n")  # fmt: skip
    return "The seeds' recipes differ from the first seed's: " + "; ".join(differ) + ".\n"


def shipped_epochs(model: str) -> int | None:
    """The epochs of argse's own recipe for ``model`` (experts/<model>.yaml); None for a model without one."""
    f = BUILTIN_RECIPES / f"{model}.yaml"
    return (yaml.safe_load(f.read_text()) or {}).get("epochs") if f.is_file() else None


def scale_line(tables: list[SeedTable], seeds: list[int]) -> str:
    """The page's first statement: how many seeds, how long each model trained against its shipped recipe, and how
    much of the paper's CSS costs and Chow [DRO] grid were trained, so a short or partial run cannot pass as the
    paper's protocol."""
    lengths = {m: (r["epochs"], shipped_epochs(m)) for m, r in tables[0].recipes.items() if "epochs" in r}
    short = {m: (e, s) for m, (e, s) in lengths.items() if s is not None and e < s}
    models = ", ".join(f"{m} {e}" + (f" of its recipe's {s}" if m in short else "") for m, (e, s) in lengths.items())
    grid = GroupDRORecipe.model_fields
    paper_grid = len(grid["grid_steps"].default) * len(grid["grid_adjustments"].default)
    costs, pairs = len(tables[0].css), len(tables[0].dro)
    what = "shortened models: a smoke test, not a reproduction" if short else "every model at its recipe's full length"
    who = f"one seed ({seeds[0]})" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    return (
        f"**{who.capitalize()}, {what}** (epochs: {models}); CSS at {costs} of the paper's {len(PAPER_COSTS)} costs "
        f"and Chow [DRO] picked among {pairs} of its {paper_grid} (eta, C) pairs (App. F.3-F.4)."
    )


def write_page(path: Path, command: str, cfgs: list[RunConfig], tables: list[SeedTable], minutes: float) -> Path:
    """docs/results/table2_<name>.md: the Table-2 layout per view, the checks, CSS's points and the models."""
    cfg = cfgs[0]
    dataset = paper_dataset(cfg)
    seeds = ", ".join(str(c.seed) for c in cfgs)
    parts = [
        f"# Table 2 of Narasimhan et al. (ICLR 2024) on {cfg.name.rsplit('_seed', 1)[0]}\n",
        scale_line(tables, [c.seed for c in cfgs]) + "\n",
        f"Made by `{command}` at {provenance.commit()} in {minutes:.1f} min (tabulation; training is not timed "
        f"here). Seeds {seeds}: "
        f"each its own long-tailed subset, splits and initialisation; ± is the standard deviation over seeds.",
        f"AURC: the mean of each error over rejection rates {SPAN.replace('-', ' to ')} (argse.selective.rejectors.aurc), "
        f"rates and errors under the training label distribution; the headline columns integrate over the target "
        f"rates each rule was fitted to on tune, the 'rates reached' ones over the rates the rules reach on test. "
        f"CSS: costs {', '.join(f'{c:g}' for c in css_costs(cfg))}, one model each, its curve through the rates "
        f"those models reach (held flat beyond them).\n",
    ]
    if dataset:
        parts.append(f"Paper columns: {PAPER}; ± there is a 95% confidence interval over 5 trials (App. F). "
                     f"Their recipe: {PAPER_RECIPES[dataset]}.\n")  # fmt: skip
    else:
        parts.append(f"This dataset is not one of the paper's, so its figures ({PAPER}) are not set beside.\n")
    for view in VIEWS:
        parts += [f"## Test prior {view[0]}, protocol {view[1]}\n", aurc_table(tables, view, dataset)]
        parts += ["The paper's claims (§6), checked:\n", "\n".join(orderings(tables, view)) + "\n"]
    level = cfg.evaluate.confidence
    for view in VIEWS:
        if more := figures_markdown(tables[0], view, level):
            parts += [f"## More figures, test prior {view[0]}, protocol {view[1]} (seed {cfgs[0].seed})\n", more]
    if diff := protocols_markdown(tables[0], level):
        parts += [f"## argse's protocol against the paper's (seed {cfgs[0].seed})\n", diff]
    parts += ["## CSS: one model per cost (test, training prior)\n", css_markdown(tables)]
    parts += ["## Chow [DRO]: eta and C picked on val\n", dro_markdown(tables, [c.seed for c in cfgs])]
    parts += ["## The models without rejection (test, %)\n", accuracy_markdown(tables)]
    parts += ["## Recipes (as the exported logits record them, first seed)\n", recipes_markdown(tables[0].recipes)]
    parts.append(recipes_across_seeds(tables, [c.seed for c in cfgs]))
    return storage.write_text(path, "\n".join(parts))
