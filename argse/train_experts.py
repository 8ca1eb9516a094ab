"""Train, calibrate and export experts: ``python -m argse.train_experts --config RUN.yaml --experts ce,decoupling``.

Under ``torchrun --nproc_per_node=N`` each expert trains with DistributedDataParallel on N
devices; ``--parallel`` instead trains several experts at once, one process per GPU, and
``--team`` all of them at once in this process, one thread and CUDA stream each.
"""

from __future__ import annotations

from argse import cli, reporting
from argse.errors import ArgseError
from argse.experts import LogitsExpert, get_expert
from argse.experts.pipeline import run


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--experts", default=None, help="comma list of registered experts (default: config 'experts')")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of each stage")
    parser.add_argument(
        "--overwrite", action="store_true", help="train experts that this run already has again, from scratch"
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
    reports = run(cfg, names, resume=args.resume, overwrite=args.overwrite, parallel=parallel, team=args.team)
    if reports is not None:
        console = cli.console()
        title = f"{cfg.name}: test split, % (ECE before / after temperature scaling)"
        console.print(reporting.accuracy_table(title, reports))
        print_outputs(console, cfg, names)
    return 0


def print_outputs(console, cfg, names: list[str]) -> None:
    """Where everything of this command went."""
    console.print(f"[bold]outputs of {', '.join(names)}[/]:")
    width = max(len(n) for n in names) + len(" checkpoints") + 1
    run_paths = cfg.paths
    console.print(f"  {'split manifest':<{width}} {run_paths.manifest}")
    console.print(f"  {'run config':<{width}} {run_paths.config}")
    for name in names:
        console.print(f"  {name + ' logits':<{width}} {run_paths.logits_dir(name)}/{{val,tune,test}}.safetensors")
        if not issubclass(get_expert(name), LogitsExpert):  # computed from another's logits: no network of its own
            console.print(
                f"  {name + ' checkpoints':<{width}} {run_paths.expert_ckpt(name)}/ (best / last .safetensors, "
                f"metrics.jsonl)"
            )


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
