"""Train, calibrate and export experts: ``python -m argse.train_experts --config RUN.yaml --experts ce,decoupling``.

Under ``torchrun --nproc_per_node=N`` each expert trains with DistributedDataParallel on N
devices; ``--parallel`` instead trains several experts at once, one process per GPU.
"""

from __future__ import annotations

from dataclasses import asdict

from argse import cli, distributed, storage
from argse.config import dump_yaml
from argse.data import prepare_data, preprocess_record
from argse.errors import ArgseError
from argse.experts import ExpertContext, get_expert, list_experts, load_plugins, load_recipe
from argse.launcher import train_in_parallel
from argse.logits import load_sources
from argse.summary import reports_table, source_report
from argse.training import resolve_device


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--experts", default=None, help="comma list of registered experts (default: config 'experts')")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of each stage")
    parser.add_argument(
        "--parallel",
        nargs="?",
        type=int,
        const=0,
        default=None,
        metavar="N",
        help="train the experts at once in N processes (default N: one per visible GPU, 1 without GPUs)",
    )
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    load_plugins(cfg.plugins)
    names = cli.split_names(args.experts) or cfg.experts
    cli.check_unique(names, "the config's 'experts' list")
    for key in cfg.recipes:
        if key not in list_experts():
            raise ArgseError(
                f"config 'recipes' names unknown expert '{key}'; available experts: {', '.join(list_experts())}"
            )
    # Validate every name and recipe before any data is loaded or any time is spent training.
    plan = [(get_expert(n), load_recipe(get_expert(n), cfg)) for n in names]
    if args.parallel is not None and distributed.launched():
        raise ArgseError("--parallel starts its own processes; run it without torchrun")
    cli.lock_run(cfg, "train_experts")  # one process per run name (rank 0 under torchrun)

    device = resolve_device(cfg.runtime)
    console = cli.console()  # after joining torchrun: only rank 0 prints
    # Rank 0 first: it writes the split manifest (and any image cache) that the others then read.
    data = distributed.rank_zero_first(lambda: prepare_data(cfg))
    where = f"{device} x {distributed.world_size()} processes" if distributed.is_distributed() else str(device)
    console.print(
        f"[bold]{cfg.name}[/]: {data.dataset}, {data.num_classes} classes, {len(data.train.labels)} training "
        f"images ({int(data.class_counts.max())} -> {int(data.class_counts.min())} per class), "
        f"{int((data.groups.of_class == 1).sum())} tail classes, device {where}"
    )
    storage.write_text(cfg.out_dir / "config.yaml", dump_yaml(asdict(cfg)))
    storage.write_json(cfg.out_dir / "preprocess.json", preprocess_record(data, cfg.data))  # for argse.predict
    if args.parallel is not None:
        train_in_parallel(args, plan, cfg, console)
    else:
        ctx = ExpertContext(cfg, data, device, resume=args.resume)
        for cls, recipe in plan:
            expert = cls(ctx, recipe)
            console.rule(f"expert {cls.name}")
            expert.train()
            temperature = expert.calibrate()
            paths = expert.export_logits()
            distributed.barrier()  # the files rank 0 wrote are complete before any rank reads them
            console.print(f"{cls.name}: temperature {temperature:.3f}; logits in {paths['test'].parent}")

    if distributed.rank() == 0:
        files = load_sources(cfg.out_dir, names, ["test"])["test"]
        d = cfg.data
        reports = {f.expert: source_report(f, d.tail_max_count, d.many_min_count, d.few_max_count) for f in files}
        console.print(reports_table(f"{cfg.name}: test split, % (ECE before / after temperature scaling)", reports))
        print_outputs(console, cfg, names)
    return 0


def print_outputs(console, cfg, names: list[str]) -> None:
    """Where everything of this command went."""
    console.print(f"[bold]outputs of {', '.join(names)}[/]:")
    console.print(f"  split manifest   {cfg.out_dir / 'splits.json'}")
    console.print(f"  run config       {cfg.out_dir / 'config.yaml'}")
    for name in names:
        console.print(f"  {name + ' logits':<16} {cfg.out_dir / 'logits' / name}/{{val,tune,test}}.safetensors")
        console.print(f"  {name + ' checkpoints':<16} {cfg.ckpt_dir / name}/ (best / last .safetensors, metrics.jsonl)")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
