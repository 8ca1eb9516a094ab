"""Train, calibrate and export experts: ``python -m argse.train_experts --config RUN.yaml --experts ce,decoupling``."""

from __future__ import annotations

from dataclasses import asdict

from argse import cli, io
from argse.config import dump_yaml
from argse.data import prepare_data
from argse.errors import ArgseError
from argse.experts import ExpertContext, get_expert, list_experts, load_plugins, load_recipe
from argse.logits import load_sources
from argse.summary import reports_table, source_report
from argse.training import resolve_device


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--experts", default=None, help="comma list of registered experts (default: config 'experts')")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of each stage")
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    load_plugins(cfg.plugins)
    names = cli.split_names(args.experts) or cfg.experts
    for key in cfg.recipes:
        if key not in list_experts():
            raise ArgseError(
                f"config 'recipes' names unknown expert '{key}'; available experts: {', '.join(list_experts())}"
            )
    # Validate every name and recipe before any data is loaded or any time is spent training.
    plan = [(get_expert(n), load_recipe(get_expert(n), cfg)) for n in names]

    console = cli.console()
    device = resolve_device(cfg.runtime)
    data = prepare_data(cfg)
    console.print(
        f"[bold]{cfg.name}[/]: {data.dataset}, {data.num_classes} classes, {len(data.train.labels)} training "
        f"images ({int(data.class_counts.max())} -> {int(data.class_counts.min())} per class), "
        f"{int((data.groups.of_class == 1).sum())} tail classes, device {device}"
    )
    io.write_text(cfg.out_dir / "config.yaml", dump_yaml(asdict(cfg)))
    ctx = ExpertContext(cfg, data, device, resume=args.resume)
    for cls, recipe in plan:
        expert = cls(ctx, recipe)
        console.rule(f"expert {cls.name}")
        expert.train()
        temperature = expert.calibrate()
        paths = expert.export_logits()
        console.print(f"{cls.name}: temperature {temperature:.3f}; logits in {paths['test'].parent}")

    files = load_sources(cfg.out_dir, names, ["test"])["test"]
    d = cfg.data
    reports = {f.expert: source_report(f, d.tail_max_count, d.many_min_count, d.few_max_count) for f in files}
    console.print(reports_table(f"{cfg.name}: test split, % (ECE before / after temperature scaling)", reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
