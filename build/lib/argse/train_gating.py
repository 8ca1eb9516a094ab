"""Train the gating network on the experts' exported logits and export the mixture.

``python -m argse.train_gating --config RUN.yaml [--experts ce,logit_adjust,...]``
(default: the config's ``experts``; ``--experts`` is ``--set experts=[...]``, so later commands need the
same). The gate trains on the gate part of ``tune``; the rest is left for the rejectors of ``argse.evaluate``
(argse.gating.pipeline). Its stage (argse.stages.gate) is found when this config already has it.
"""

from __future__ import annotations

from argse import cli
from argse.reports import pages
from argse.stages.gate import build_gate


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--experts", default=None, help="comma list of experts to mix (default: the config's experts)")
    parser.add_argument("--rebuild", action="store_true", help="train the gate again even where this config has it")
    args = parser.parse_args(argv)
    requested = cli.split_names(args.experts)
    cfg = cli.load_config(args, {"experts": requested} if requested else None)
    console = cli.console()
    console.print(
        f"experts: {', '.join(cfg.experts)}" + ("" if requested else " (the config's experts; --experts to choose)")
    )
    built = build_gate(cfg, console, args.rebuild)
    if built.trained is not None:
        result = built.trained
        console.print(pages.mixture_table(f"{cfg.name}: gating on test (%; NLL in nats)", result.reports))
        console.print(pages.routing_table(result.names, result.routing))
    console.print(f"gate and mixture: {built.stage.folder} (readable as {cfg.out_dir / 'gating'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
