"""Reproduce a run end to end, over one or several seeds, and write its results page.

``python -m argse.reproduce --config configs/cifar10_lt_cpu.yaml [--seeds 0,1,2] [--skip-training]``
(``make reproduce SEEDS=0,1,2``) trains and exports the run's experts, trains the gate, runs the
selective evaluation, and writes ``docs/results/<name>.md`` with ``docs/results/<name>.png`` (the
risk-coverage curves of the first seed). With ``--seeds`` every seed is a run of its own, named
``<name>_seed<S>`` (its own long-tailed subset, splits and initialisation), and the page reports
mean ± standard error over the seeds, as Narasimhan et al. (2024) do over their trials. The AURC
table covers both test priors and both protocols, whatever the run config selects.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch

from argse import cli, evaluate, storage, train_experts, train_gating
from argse.config import RunConfig, load_run_config
from argse.errors import ArgseError
from argse.logits import load_sources
from argse.summary import COLUMNS, source_report

PUBLISHED = """\
## Published figures to hold these against

| figure | value | source | recipe |
|---|---|---|---|
| CIFAR-100-LT (IF 100) AURC, balanced / worst-group error: Chow | 0.509 ± 0.002 / 0.883 ± 0.007 | Narasimhan et al. 2024, Table 2 | CE ResNet-32, 256 epochs, lr 0.4, batch 128; test prior = training prior; 5 trials |
| same, Plug-in [Balanced] | 0.292 ± 0.006 / 0.416 ± 0.015 | Table 2 | same |
| same, Plug-in [Worst] | 0.287 ± 0.008 / 0.321 ± 0.018 | Table 2 | same |

These are CIFAR-100-LT figures (not available on this machine); for CIFAR-10-LT the paper reports
none. What should carry over is the ordering under the training prior: both plug-ins well below
Chow, Plug-in [Worst] lowest on worst-group error. The page's own checks test exactly that.
"""

# Every combination of the two settings the paper's comparison depends on.
VIEWS = [("train", "argse"), ("train", "paper"), ("balanced", "argse"), ("balanced", "paper")]
AURC_KEYS = ("balanced_error@0-0.8", "worst_group_error@0-0.8")


def seed_configs(args) -> list[tuple[list[str], RunConfig]]:
    """(overrides, config) per seed; without --seeds, the run config as it is."""
    seeds = cli.split_names(args.seeds)
    if not seeds:
        return [(list(args.overrides), cli.load_config(args))]
    base = load_run_config(args.config, args.overrides)
    out = []
    for s in seeds:
        sets = [*args.overrides, f"seed={int(s)}", f"name={base.name}_seed{int(s)}"]
        out.append((sets, load_run_config(args.config, sets)))
    return out


def run_seed(args, sets: list[str], cfg: RunConfig) -> dict:
    """Train (unless skipped), gate and evaluate one seed; its accuracy reports and AURCs per view."""
    argv = (["--config", args.config] if args.config else []) + [x for s in sets for x in ("--set", s)]
    steps = [] if args.skip_training else [(train_experts.main, ["--resume"] if args.resume else [])]
    for step, extra in [*steps, (train_gating.main, [])]:
        if step(argv + extra) != 0:
            raise ArgseError(f"{step.__module__} failed for {cfg.name}; see the lines above")
    names = cfg.experts + ["gating"]
    files = load_sources(cfg.out_dir, names, ["test"])["test"]
    d = cfg.data
    reports = {f.expert: source_report(f, d.tail_max_count, d.many_min_count, d.few_max_count) for f in files}
    aurcs = {}
    for prior, protocol in VIEWS:
        view = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, test_prior=prior, protocol=protocol))
        ev = evaluate.evaluate_sources(view, names, cfg.evaluate.methods)
        aurcs[(prior, protocol)] = ev.aurcs
        if (prior, protocol) == (cfg.evaluate.test_prior, cfg.evaluate.protocol):
            evaluate.write_reports(cfg, ev)  # the run's own report, in its configured view
    return {"reports": reports, "aurcs": aurcs}


def mean_se(values: list[float], scale: float = 1.0, digits: int = 4) -> str:
    """'mean ± standard error' (just the value for one seed)."""
    v = [scale * x for x in values]
    m = sum(v) / len(v)
    if len(v) == 1:
        return f"{m:.{digits}f}"
    se = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))
    return f"{m:.{digits}f} ± {se:.{digits}f}"


def accuracy_table(runs: list[dict]) -> str:
    columns = COLUMNS + ["ece_raw", "ece_cal"]
    lines = ["| source | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in runs[0]["reports"]:
        cells = [mean_se([r["reports"][name][c] for r in runs], 100, 2) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def aurc_table(runs: list[dict]) -> str:
    head = " | ".join(f"{k.split('@')[0].replace('_error', '')} ({p}, {q})" for p, q in VIEWS for k in AURC_KEYS)
    lines = ["| source | method | " + head + " |", "|---|---|" + "---|" * (2 * len(VIEWS))]
    for sm in runs[0]["aurcs"][VIEWS[0]]:
        cells = [mean_se([r["aurcs"][v][sm][k] for r in runs]) for v in VIEWS for k in AURC_KEYS]
        lines.append(f"| {sm[0]} | {sm[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def claims(runs: list[dict]) -> list[str]:
    """The checks the page must show, on seed means, each with its numbers."""

    def mean(get) -> float:
        return sum(get(r) for r in runs) / len(runs)

    out = []
    reports = runs[0]["reports"]
    for name in (n for n in reports if n not in ("ce", "gating") and "ce" in reports):
        tail = mean(lambda r, n=name: r["reports"][n]["tail"] - r["reports"]["ce"]["tail"])
        bal = mean(lambda r, n=name: r["reports"][n]["balanced_acc"] - r["reports"]["ce"]["balanced_acc"])
        ok = tail > 0 and bal > 0
        out.append(
            f"- {'PASS' if ok else 'FAIL'}: `{name}` vs ce: tail {100 * tail:+.2f}, balanced {100 * bal:+.2f} points"
        )
    for view in (("train", "paper"), ("train", "argse")):
        for source in ("ce", "gating"):
            a = runs[0]["aurcs"][view]
            if (source, "chow") not in a:
                continue
            chow = mean(lambda r, s=source, v=view: r["aurcs"][v][(s, "chow")]["balanced_error@0-0.8"])
            pb = mean(lambda r, s=source, v=view: r["aurcs"][v][(s, "plugin_balanced")]["balanced_error@0-0.8"])
            out.append(
                f"- {'PASS' if pb < chow else 'FAIL'}: {source}, prior {view[0]}, protocol {view[1]}: plugin_balanced "
                f"balanced AURC {pb:.4f} vs chow {chow:.4f}"
            )
    return out


def write_page(args, cfgs: list[RunConfig], runs: list[dict], minutes: float) -> Path:
    cfg, d = cfgs[0], cfgs[0].data
    name = cfg.name.rsplit("_seed", 1)[0] if len(cfgs) > 1 else cfg.name
    docs = Path(args.docs)
    png = (cfg.out_dir / "evaluation" / "rc_curves.png").read_bytes()
    storage.atomic_write(docs / f"{name}.png", lambda tmp: Path(tmp).write_bytes(png))
    seeds = ", ".join(str(c.seed) for c in cfgs)
    lines = [
        f"# Results: `{name}`\n",
        f"Generated by `python -m argse.reproduce{' --config ' + args.config if args.config else ''}"
        f"{' --seeds ' + args.seeds if args.seeds else ''}{' --skip-training' if args.skip_training else ''}"
        f"{''.join(' --set ' + s for s in args.overrides)}` on "
        f"{time.strftime('%Y-%m-%d')} ({torch.__version__}, {torch.get_num_threads()} CPU threads; {minutes:.0f} min). "
        f"Dataset `{d.dataset}`, imbalance factor {d.imbalance_factor:g}, tail = classes with at most "
        f"{d.tail_max_count} training images. Seeds: {seeds} ({len(cfgs)} run(s); values are mean ± standard "
        f"error over seeds). Recipes: `experts/*.yaml` overridden by `recipes` in `{args.config}`.\n",
        "## Accuracy on `test` (%)\n",
        "ECE (15 bins) before (`ece_raw`) and after (`ece_cal`) temperature scaling on `val`. T minimises NLL on "
        "`val`, not ECE on `test`, so an already well-calibrated source can end slightly above its raw ECE. "
        "`acc_lt` re-weights the balanced test split to the training label distribution.\n",
        accuracy_table(runs),
        "## Selective prediction: AURC over rejection rates [0, 0.8] on `test` (lower is better)\n",
        "Rejectors fit on the rejector part of `tune` (the gate trains on the other part). Columns: error "
        "(test prior, protocol); prior `train` weights every sample by pi_train(y)/pi_split(y) as Narasimhan et al. "
        "do, `balanced` takes the split as it is; protocol `paper` is the published procedure, `argse` adds "
        "calibration, best-round beta, refitting and the grid search (README, Selective prediction).\n",
        aurc_table(runs),
        f"\n![risk-coverage curves, seed {cfg.seed}]({name}.png)\n",
        "## Checks (on seed means)\n",
        *claims(runs),
        "",
        PUBLISHED,
    ]
    return storage.write_text(docs / f"{name}.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--seeds", default=None, help="comma list of run seeds, e.g. 0,1,2 (default: the config's)")
    parser.add_argument("--skip-training", action="store_true", help="reuse exported expert logits")
    parser.add_argument("--resume", action="store_true", help="resume interrupted expert training")
    parser.add_argument("--docs", default="docs/results", help="where the page goes")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    pairs = seed_configs(args)
    runs = [run_seed(args, sets, cfg) for sets, cfg in pairs]
    path = write_page(args, [cfg for _, cfg in pairs], runs, (time.perf_counter() - start) / 60)
    cli.console().print(f"results page: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
