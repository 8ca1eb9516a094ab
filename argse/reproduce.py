"""Reproduce a run end to end, over one or several seeds, and write its results page.

``python -m argse.reproduce --config configs/cifar10_lt_cpu.yaml [--seeds 0,1,2] [--skip-training]``
(``make reproduce SEEDS=0,1,2``) trains and exports the run's experts, trains the gate, runs the
selective evaluation, and writes the results page ``outputs/results/<name>.md`` with its plot
``<name>.png`` (under the run's ``output_dir``; ``--out docs/results/<name>.md`` for the published pages). With ``--seeds`` every seed is a run of its own, named
``<name>_seed<S>`` (its own long-tailed subset, splits and initialisation), and the page reports
mean ± standard error over the seeds, as Narasimhan et al. (2024) do over their trials. The AURC
table covers both test priors and both protocols, whatever the run config selects.
"""

from __future__ import annotations

import time
from pathlib import Path

from argse import cli
from argse.config.loading import load_run_config
from argse.config.sections import RunConfig
from argse.core import storage
from argse.core.errors import ArgseError
from argse.papers.multi_seed import claims, run_seed
from argse.papers.narasimhan2024 import parse_seeds
from argse.reports import pages


def seed_configs(args) -> list[RunConfig]:
    """One config per seed; without --seeds, the run config as it is."""
    seeds = parse_seeds(args.seeds)
    base = cli.load_config(args)  # --print-config stops here
    if not seeds:
        return [base]
    sets = [[*args.overrides, f"seed={s}", f"name={base.name}_seed{s}"] for s in seeds]
    return [load_run_config(args.config, s) for s in sets]


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
    parser.add_argument("--rebuild", action="store_true", help="train the experts again from scratch")
    parser.add_argument(
        "--out",
        default=None,
        metavar="PAGE.md",
        help="the results page, named after the file (default: <output_dir>/results/<name>.md); its plot goes beside it",
    )
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(".md"):
        raise ArgseError(f"--out {args.out} must name a markdown page (.md), e.g. --out docs/results/my_run.md")
    start = time.perf_counter()
    cfgs = seed_configs(args)
    if args.out is not None:  # the page and its plot beside it, checked before the training
        for page in (Path(args.out), Path(args.out).with_suffix(".png")):
            storage.check_destination(page, make_folder=True)
    runs = [run_seed(cfg, not args.skip_training, args.rebuild) for cfg in cfgs]
    name = cfgs[0].name.rsplit("_seed", 1)[0] if len(cfgs) > 1 else cfgs[0].name
    folder = Path(cfgs[0].output_dir) / "results"
    if args.out is not None:
        folder, name = Path(args.out).parent, Path(args.out).stem
    tables = (
        pages.seeds_accuracy_markdown([r.reports for r in runs]),
        pages.seeds_aurc_markdown([r.aurcs for r in runs]),
    )
    minutes = (time.perf_counter() - start) / 60
    path = pages.write_results_page(
        folder,
        name,
        (command_line(args), args.config),
        cfgs,
        tables,
        claims(runs, cfgs[0].data, cfgs[0].evaluate.confidence),
        minutes,
        [r.evaluation for r in runs],
        runs[0].sources,
        pages.published_markdown(cfgs[0], runs[0].classes, [r.reports for r in runs], runs[0].sources),
    )
    cli.console().print(f"results page: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
