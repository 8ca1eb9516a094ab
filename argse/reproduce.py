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
import time
from dataclasses import dataclass
from pathlib import Path

from argse import cli, reporting
from argse.config import RunConfig, load_run_config
from argse.evaluation import aurc_key, evaluate_sources
from argse.experts import pipeline as expert_pipeline
from argse.gating import pipeline as gating_pipeline
from argse.groups import TAIL
from argse.logits import load_sources
from argse.metrics import source_reports

# Every combination of the two settings the paper's comparison depends on: (test prior, protocol).
VIEWS = [("train", "argse"), ("train", "paper"), ("balanced", "argse"), ("balanced", "paper")]
# The AURC the page's checks compare: balanced error over the paper's range of rejection rates.
BALANCED_AURC = aurc_key("balanced_error", "0-0.8")


@dataclass
class SeedResult:
    """One seed's accuracy reports per source and AURCs per view and (source, method)."""

    reports: dict[str, dict[str, float]]
    aurcs: dict[tuple[str, str], dict[tuple[str, str], dict[str, float]]]


def seed_configs(args) -> list[RunConfig]:
    """One config per seed; without --seeds, the run config as it is."""
    seeds = cli.split_names(args.seeds)
    if not seeds:
        return [cli.load_config(args)]
    base = load_run_config(args.config, args.overrides)
    sets = [[*args.overrides, f"seed={int(s)}", f"name={base.name}_seed{int(s)}"] for s in seeds]
    return [load_run_config(args.config, s) for s in sets]


def run_seed(cfg: RunConfig, train: bool, resume: bool) -> SeedResult:
    """Train (unless ``train`` is false), gate and evaluate one seed, through the library functions."""
    cli.lock_run(cfg, "reproduce")
    if train:
        expert_pipeline.run(cfg, cfg.experts, resume=resume)
    gating = gating_pipeline.run(cfg, cfg.experts)
    cli.console().print(reporting.mixture_table(f"{cfg.name}: gating on test (%; NLL in nats)", gating.reports))
    names = cfg.experts + ["gating"]
    reports = source_reports(load_sources(cfg.out_dir, names, ["test"])["test"], cfg.data)
    aurcs = {}
    for prior, protocol in VIEWS:
        view = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, test_prior=prior, protocol=protocol))
        ev = evaluate_sources(view, names, cfg.evaluate.methods)
        aurcs[(prior, protocol)] = ev.aurcs
        if (prior, protocol) == (cfg.evaluate.test_prior, cfg.evaluate.protocol):
            reporting.write_evaluation(cfg, ev)  # the run's own report, in its configured view
    return SeedResult(reports, aurcs)


def claims(runs: list[SeedResult]) -> list[str]:
    """The checks the page must show, on seed means, each with its numbers."""

    def mean(get) -> float:
        return sum(get(r) for r in runs) / len(runs)

    out = []
    reports = runs[0].reports
    for name in (n for n in reports if n not in ("ce", "gating") and "ce" in reports):
        tail = mean(lambda r, n=name: r.reports[n][TAIL] - r.reports["ce"][TAIL])
        bal = mean(lambda r, n=name: r.reports[n]["balanced_acc"] - r.reports["ce"]["balanced_acc"])
        ok = tail > 0 and bal > 0
        out.append(
            f"- {'PASS' if ok else 'FAIL'}: `{name}` vs ce: tail {100 * tail:+.2f}, balanced {100 * bal:+.2f} points"
        )
    for view in (("train", "paper"), ("train", "argse")):
        for source in ("ce", "gating"):
            if (source, "chow") not in runs[0].aurcs[view]:
                continue
            chow = mean(lambda r, s=source, v=view: r.aurcs[v][(s, "chow")][BALANCED_AURC])
            pb = mean(lambda r, s=source, v=view: r.aurcs[v][(s, "plugin_balanced")][BALANCED_AURC])
            out.append(
                f"- {'PASS' if pb < chow else 'FAIL'}: {source}, prior {view[0]}, protocol {view[1]}: plugin_balanced "
                f"balanced AURC {pb:.4f} vs chow {chow:.4f}"
            )
    return out


def command_line(args) -> str:
    """The command that made the page, as the page names it."""
    return (
        f"python -m argse.reproduce{' --config ' + args.config if args.config else ''}"
        f"{' --seeds ' + args.seeds if args.seeds else ''}{' --skip-training' if args.skip_training else ''}"
        f"{''.join(' --set ' + s for s in args.overrides)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--seeds", default=None, help="comma list of run seeds, e.g. 0,1,2 (default: the config's)")
    parser.add_argument("--skip-training", action="store_true", help="reuse exported expert logits")
    parser.add_argument("--resume", action="store_true", help="resume interrupted expert training")
    parser.add_argument("--docs", default="docs/results", help="where the page goes")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cfgs = seed_configs(args)
    runs = [run_seed(cfg, not args.skip_training, args.resume) for cfg in cfgs]
    name = cfgs[0].name.rsplit("_seed", 1)[0] if len(cfgs) > 1 else cfgs[0].name
    tables = (
        reporting.seeds_accuracy_markdown([r.reports for r in runs]),
        reporting.seeds_aurc_markdown([r.aurcs for r in runs]),
    )
    minutes = (time.perf_counter() - start) / 60
    path = reporting.write_results_page(
        Path(args.docs), name, (command_line(args), args.config), cfgs, tables, claims(runs), minutes
    )
    cli.console().print(f"results page: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
