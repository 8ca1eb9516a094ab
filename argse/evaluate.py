"""Selective-prediction report for experts and the gated mixture.

``python -m argse.evaluate --config RUN.yaml --sources ce,gating --methods chow,plugin_balanced,plugin_worst``
fits each rejector on the rejector part of ``tune`` (the part the gate did not train on) for every
target rejection rate, evaluates it on ``test`` and writes report.json, rules.json, rc_curves.csv,
rc_curves.png and summary.md under outputs/<run>/evaluation/ (argse.evaluation computes them).
"""

from __future__ import annotations

from argse import cli, reporting
from argse.errors import ArgseError
from argse.evaluation import evaluate_sources
from argse.logits import available_sources
from argse.selective import REJECTORS


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--sources", default=None, help="comma list of experts and/or 'gating' (default: all exported)")
    parser.add_argument("--methods", default=None, help=f"comma list of {', '.join(REJECTORS.names())}")
    args = parser.parse_args(argv)
    methods = cli.split_names(args.methods)
    cfg = cli.load_config(args, {"evaluate": {"methods": methods}} if methods else None)
    cli.lock_run(cfg, "evaluate")
    sources = cli.split_names(args.sources) or cfg.evaluate.sources or available_sources(cfg.out_dir)
    if not sources:
        raise ArgseError(f"no exported logits under {cfg.paths.logits_root}; run make experts first")
    ev = evaluate_sources(cfg, sources, cfg.evaluate.methods)
    paths = reporting.write_evaluation(cfg, ev)
    console = cli.console()
    console.print(reporting.aurc_table(
        f"{cfg.name}: AURC on test (lower is better; {reporting.describe(cfg.evaluate)})", ev.aurcs))  # fmt: skip
    console.print(
        f"{len(ev.curves)} curves in {ev.seconds:.1f} s; written: " + ", ".join(str(p) for p in paths.values())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
