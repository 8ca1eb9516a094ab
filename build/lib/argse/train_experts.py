"""Train, calibrate and export experts: ``python -m argse.train_experts --config RUN.yaml --experts ce,decoupling``.

Under ``torchrun --nproc_per_node=N`` each expert trains with DistributedDataParallel on N
devices; ``--parallel`` instead trains several experts at once, one process per GPU, and
``--team`` all of them at once in this process, one thread and CUDA stream each.
"""

from __future__ import annotations

from argse import cli
from argse.core.errors import ArgseError
from argse.reports import pages
from argse.stages.experts import run


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--experts", default=None, help="comma list of registered experts (default: config 'experts')")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="train these experts again from scratch, even where this config has them (the stages they replace "
        "are kept under outputs/NAME/stages/.retired/ until pruned)",
    )
    parser.add_argument(
        "--parallel",
        nargs="?",
        type=int,
        const=0,
        default=None,
        metavar="N",
        help="train the experts at once in N processes (default N: one per visible GPU, 1 without GPUs)",
    )
    parser.add_argument(
        "--team",
        action="store_true",
        help="train the experts at once in this process, one thread and CUDA stream each (one GPU, one data copy)",
    )
    args = parser.parse_args(argv)
    if args.parallel is not None and args.parallel < 0:
        raise ArgseError(
            f"--parallel must be >= 0 (N processes; 0 or no value: one per visible GPU), got {args.parallel}"
        )
    cfg = cli.load_config(args)
    names = cli.split_names(args.experts) or cfg.experts
    parallel = args if args.parallel is not None else None
    reports = run(cfg, names, rebuild=args.rebuild, parallel=parallel, team=args.team)
    if reports is not None:
        title = f"{cfg.name}: test split, % (ECE before / after temperature scaling)"
        cli.console().print(pages.accuracy_table(title, reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
