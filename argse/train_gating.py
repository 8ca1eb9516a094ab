"""Train the gating network on exported expert logits and export the mixture.

``python -m argse.train_gating --config RUN.yaml [--experts ce,logit_adjust,...]``
(default: every expert with exported logits in the run). The gate trains on the gate part of
``tune``; the rest is left for the rejectors of ``argse.evaluate`` (argse.gating.pipeline).
"""

from __future__ import annotations

from argse import cli, reporting
from argse.gating.pipeline import expert_names, run


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--experts", default=None, help="comma list of experts to mix (default: all exported)")
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    cli.lock_run(cfg, "train_gating")
    result = run(cfg, expert_names(cfg, cli.split_names(args.experts)))
    console = cli.console()
    console.print(reporting.mixture_table(f"{cfg.name}: gating on test (%; NLL in nats)", result.reports))
    console.print(reporting.routing_table(result.names, result.routing))
    gate_files = "gate.json, gate.safetensors" if cfg.gating.gate == "learned" else "gate.json"
    console.print(f"gate: {result.gate_dir}/ ({gate_files})")
    console.print(f"mixture logits: {result.mixture_dir}/{{val,tune,test}}.safetensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
