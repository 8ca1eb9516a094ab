"""Selective-prediction report for experts and the gated mixture.

``python -m argse.evaluate --config RUN.yaml --sources ce,gating --methods chow,plugin_balanced,plugin_worst``
fits each rejector on the rejector part of ``tune`` (the part the gate did not train on) for every
target rejection rate, evaluates it on ``test`` and writes report.json, rules.json, rc_curves.csv,
rc_curves.png and summary.md under outputs/<run>/evaluation/ (argse.evaluation computes them).

The sources are ``--sources``, else ``evaluate.sources``, else the config's ``experts`` and, when the
run has a gate, ``gating``. Evaluating some sources keeps the other sources' earlier results when
they were made under the same settings (argse.evaluation_merge); otherwise a line names those dropped.
"""

from __future__ import annotations

from argse import cli, reporting
from argse.errors import ArgseError
from argse.evaluation import evaluate_sources
from argse.evaluation_merge import merge_previous
from argse.logits import available_sources
from argse.selective import REJECTORS


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--sources", default=None,
                        help="comma list of experts and/or 'gating' (default: the config's experts and the gate)")  # fmt: skip
    parser.add_argument("--methods", default=None, help=f"comma list of {', '.join(REJECTORS.names())}")
    args = parser.parse_args(argv)
    methods = cli.split_names(args.methods)
    cfg = cli.load_config(args, {"evaluate": {"methods": methods}} if methods else None)
    cli.lock_run(cfg, "evaluate")
    console = cli.console()
    sources = cli.split_names(args.sources) or cfg.evaluate.sources
    if not sources:
        sources = default_sources(cfg, console)
    merged = merge_previous(cfg, evaluate_sources(cfg, sources, cfg.evaluate.methods))
    ev = merged.evaluation
    paths = reporting.write_evaluation(cfg, ev)
    console.print(reporting.aurc_table(
        f"{cfg.name}: AURC on test (lower is better; {reporting.describe(cfg.evaluate)})", ev.aurcs))  # fmt: skip
    if note := reporting.empty_group_note(ev.curves):
        console.print(note)
    if line := merged.line():
        console.print(line)
    console.print(
        f"{len(ev.curves)} curves in {ev.seconds:.1f} s; written: " + ", ".join(str(p) for p in paths.values())
    )
    return 0


def default_sources(cfg, console) -> list[str]:
    """The config's experts, and the gate when the run has one; the line that says so, and what is ignored."""
    exported = [s for s in available_sources(cfg.out_dir) if s != "gating"]
    if missing := [n for n in cfg.experts if n not in exported]:
        one = len(missing) == 1
        raise ArgseError(
            f"the config's experts name {', '.join(missing)}, which {'has' if one else 'have'} no exported logits "
            f"under {cfg.paths.logits_root}; train {'it' if one else 'them'} (make experts "
            f"EXPERTS={','.join(missing)}) or set experts=[...] to the experts this run has"
        )
    gate = cfg.paths.gate_json.is_file()
    sources = list(cfg.experts) + (["gating"] if gate else [])
    if not sources:
        raise ArgseError(
            "the config's experts list is empty and the run has no gate; set experts=[...] or pass --sources"
        )
    console.print(f"sources: {', '.join(sources)} (the config's experts{' and its gate' if gate else ''}; "
                  f"--sources to choose)")  # fmt: skip
    if ignored := [s for s in exported if s not in sources]:
        console.print(f"ignored: logits of {', '.join(ignored)} (not in the config's experts; add it to experts "
                      f"or pass --sources)")  # fmt: skip
    return sources


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
