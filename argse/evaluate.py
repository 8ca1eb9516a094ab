"""Selective-prediction report for experts and the gated mixture.

``python -m argse.evaluate --config RUN.yaml --sources ce,gating --methods chow,plugin_balanced,plugin_worst``
fits each rejector on the rejector part of ``tune`` (the part the gate did not train on) for every
target rejection rate, evaluates it on ``test`` and writes report.json, rules.json, rc_curves.csv,
rc_curves.png and summary.md into the evaluation's stage (``outputs/<run>/evaluation`` leads to it;
argse.stages.evaluation, argse.selective.sweep compute them).

The sources are ``--sources``, else ``evaluate.sources``, else the config's ``experts`` and, when this
config has a gate, ``gating``. Other sources are another evaluation, in a stage of its own.
"""

from __future__ import annotations

from argse import cli
from argse.reports import pages
from argse.selective.rejectors import REJECTORS
from argse.stages.evaluation import build_evaluation
from argse.stages.run import RunStages


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--sources", default=None,
                        help="comma list of experts and/or 'gating' (default: the config's experts and the gate)")  # fmt: skip
    parser.add_argument("--methods", default=None, help=f"comma list of {', '.join(REJECTORS.names())}")
    parser.add_argument("--rebuild", action="store_true", help="evaluate again even where this config has it")
    args = parser.parse_args(argv)
    methods = cli.split_names(args.methods)
    cfg = cli.load_config(args, {"evaluate": {"methods": methods}} if methods else None)
    console = cli.console()
    sources = cli.split_names(args.sources)
    if not sources:
        sources = RunStages(cfg).default_sources()
        how = "evaluate.sources" if cfg.evaluate.sources else "the config's experts and its gate, when it has one"
        console.print(f"sources: {', '.join(sources)} ({how}; --sources to choose)")
    built = build_evaluation(cfg, sources, console, args.rebuild)
    console.print(pages.aurc_table(
        f"{cfg.name}: AURC on test (lower is better; {pages.describe(cfg.evaluate)}; [95% bootstrap interval])",
        built.aurcs, built.intervals))  # fmt: skip
    if built.evaluation is not None:
        if note := pages.empty_group_note(built.evaluation.curves):
            console.print(note)
        console.print(f"{len(built.evaluation.curves)} curves in {built.evaluation.seconds:.1f} s")
    console.print(f"written: {built.stage.folder} (readable as {cfg.out_dir / 'evaluation'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
