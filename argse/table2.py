"""Narasimhan et al. (ICLR 2024)'s Table 2 for one config over seeds, beside the paper's figures.

``python -m argse.table2 --config configs/cifar10_lt_table2.yaml --seeds 0,1,2 [--skip-training]``
(``make table2``) trains, per seed, the config's experts (ce, logit_adjust, group_dro), the gate and
one CSS model per cost of ``recipes.css.costs``, then measures Chow, CSS, Chow [BCE], Chow [DRO],
Plug-in [Balanced] and Plug-in [Worst] (and the gated team) by balanced and worst-group AURC, and
writes the page ``<output_dir>/results/table2_<name>.md`` (``--out docs/results/table2_<name>.md`` for
the published one). ``--skip-training`` only reads the exported logits (minutes, no training).
"""

from __future__ import annotations

import time
from pathlib import Path

from argse import cli
from argse.core import storage
from argse.core.errors import ArgseError
from argse.papers.narasimhan2024 import parse_seeds, seed_configs, tabulate_seed, train_all
from argse.papers.table2_page import write_page


def command_line(args) -> str:
    """The command that made the page, as the page names it."""
    parts = ["python -m argse.table2"]
    parts += [f"--config {args.config}"] if args.config else []
    parts += [f"--seeds {args.seeds}"] if args.seeds else []
    parts += ["--skip-training"] if args.skip_training else []
    parts += [f"--out {args.out}"] if args.out else []
    parts += [f"--set {s}" for s in args.overrides]
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--seeds", default=None, help="comma list of run seeds, e.g. 0,1,2 (default: the config's)")
    parser.add_argument("--skip-training", action="store_true", help="only tabulate the exported logits")
    parser.add_argument("--rebuild", action="store_true", help="train every model again from scratch")
    parser.add_argument(
        "--out", default=None, metavar="PAGE.md", help="the page (default: <output_dir>/results/table2_<name>.md)"
    )
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(".md"):
        raise ArgseError(f"--out {args.out} must name a markdown page (.md), e.g. --out docs/results/table2_my_run.md")
    seeds = parse_seeds(args.seeds)
    cli.load_config(args)  # the config as given, checked; --print-config stops here
    cfgs = seed_configs(args.config, args.overrides, seeds)
    name = cfgs[0].name.rsplit("_seed", 1)[0] if seeds else cfgs[0].name
    out = Path(args.out) if args.out else Path(cfgs[0].output_dir) / "results" / f"table2_{name}.md"
    if args.out:
        storage.check_destination(out, make_folder=True)  # before the training, not after it
    if not args.skip_training:
        train_all(cfgs, rebuild=args.rebuild)
    start = time.perf_counter()
    tables = [tabulate_seed(cfg) for cfg in cfgs]
    page = write_page(out, command_line(args), cfgs, tables, (time.perf_counter() - start) / 60)
    cli.console().print(f"Table 2 page: {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
