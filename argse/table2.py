"""Narasimhan et al. (ICLR 2024)'s Table 2 for one config over seeds, beside the paper's figures.

``python -m argse.table2 --config configs/cifar10_lt_table2.yaml --seeds 0,1,2 [--skip-training]``
(``make table2``) trains, per seed, the config's experts (ce, logit_adjust, group_dro), the gate and
one CSS model per cost of ``recipes.css.costs``, then measures Chow, CSS, Chow [BCE], Chow [DRO],
Plug-in [Balanced] and Plug-in [Worst] (and the gated team) by balanced and worst-group AURC, and
writes ``docs/results/table2_<name>.md``. ``--skip-training`` only reads the exported logits.
"""

from __future__ import annotations

import time
from pathlib import Path

from argse import cli
from argse.table2_harness import seed_configs, tabulate_seed, train_all
from argse.table2_page import write_page


def command_line(args) -> str:
    """The command that made the page, as the page names it."""
    parts = ["python -m argse.table2"]
    parts += [f"--config {args.config}"] if args.config else []
    parts += [f"--seeds {args.seeds}"] if args.seeds else []
    parts += ["--skip-training"] if args.skip_training else []
    parts += [f"--set {s}" for s in args.overrides]
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--seeds", default=None, help="comma list of run seeds, e.g. 0,1,2 (default: the config's)")
    parser.add_argument("--skip-training", action="store_true", help="only tabulate the exported logits")
    parser.add_argument("--resume", action="store_true", help="resume interrupted training")
    parser.add_argument("--docs", default="docs/results", help="where the page goes")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in cli.split_names(args.seeds) or []]
    cfgs = seed_configs(args.config, args.overrides, seeds)
    if not args.skip_training:
        train_all(cfgs, resume=args.resume)
    start = time.perf_counter()
    tables = [tabulate_seed(cfg) for cfg in cfgs]
    name = cfgs[0].name.rsplit("_seed", 1)[0] if seeds else cfgs[0].name
    page = write_page(Path(args.docs) / f"table2_{name}.md", command_line(args), cfgs, tables,
                      (time.perf_counter() - start) / 60)  # fmt: skip
    cli.console().print(f"Table 2 page: {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
