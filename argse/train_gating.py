"""Train the gating network on exported expert logits and export the mixture.

``python -m argse.train_gating --config RUN.yaml [--experts ce,logit_adjust,...]``
(default: the config's ``experts``; logits of other experts in the run folder are ignored, and named).
The gate trains on the gate part of ``tune``; the rest is left for the rejectors of ``argse.evaluate``
(argse.gating.pipeline).
"""

from __future__ import annotations

from argse import cli, reporting
from argse.errors import ArgseError
from argse.gating.pipeline import expert_names, run
from argse.logits import available_sources


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--experts", default=None, help="comma list of experts to mix (default: the config's experts)")
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    cli.lock_run(cfg, "train_gating")
    console = cli.console()
    requested = cli.split_names(args.experts)
    names = expert_names(cfg, requested or cfg.experts)
    if not requested:
        exported = [s for s in available_sources(cfg.out_dir) if s != "gating"]
        check_exported(cfg, names, exported)
        console.print(f"experts: {', '.join(names)} (the config's experts; --experts to choose)")
        if ignored := [s for s in exported if s not in names]:
            console.print(f"ignored: logits of {', '.join(ignored)} (not in the config's experts; add it to experts "
                          f"or pass --experts)")  # fmt: skip
    result = run(cfg, names)
    console.print(reporting.mixture_table(f"{cfg.name}: gating on test (%; NLL in nats)", result.reports))
    console.print(reporting.routing_table(result.names, result.routing))
    gate_files = "gate.json, gate.safetensors" if cfg.gating.gate == "learned" else "gate.json"
    console.print(f"gate: {result.gate_dir}/ ({gate_files})")
    console.print(f"mixture logits: {result.mixture_dir}/{{val,tune,test}}.safetensors")
    return 0


def check_exported(cfg, names: list[str], exported: list[str]) -> None:
    """The config's experts all have exported logits: a team named in the config is the run's team."""
    if missing := [n for n in names if n not in exported]:
        one = len(missing) == 1
        raise ArgseError(
            f"the config's experts name {', '.join(missing)}, which {'has' if one else 'have'} no exported logits "
            f"under {cfg.paths.logits_root}; train {'it' if one else 'them'} (make experts "
            f"EXPERTS={','.join(missing)}) or set experts=[...] to the experts this run has"
        )


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
