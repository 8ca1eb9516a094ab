"""Algorithm 1/2 alone (``evaluate.search: power``) against the grid search of the rule family.

    python -m studies.plugin_search --config configs/cifar10_lt.yaml [--set evaluate.test_prior=balanced]

Reads the run's exported logits (every source), fits both plug-in methods with each search on the
rejector part of ``tune`` and prints each method's own objective as AURC over [0, 0.8] on
``test``, with the relative change. Writes nothing.
"""

from __future__ import annotations

import argparse

from rich.table import Table

from argse import cli
from argse.config.loading import load_run_config
from argse.config.schema import changed
from argse.data.logits import SourceReader, folder_sources, run_folders, run_manifest
from argse.reports import pages
from argse.selective.sweep import aurc_key, evaluate_sources
from argse.stages.gate_file import GATE_JSON, read_gate

OBJECTIVE = {"plugin_balanced": "balanced_error", "plugin_worst": "worst_group_error"}  # the AURC each one lowers
SPAN = "0-0.8"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    cfg = load_run_config(args.config, args.overrides)
    sources = cfg.evaluate.sources or folder_sources(cfg.out_dir)
    reader = SourceReader(run_folders(cfg.out_dir, sources), ["tune", "test"], run_manifest(cfg.out_dir))
    gate_folder = cfg.out_dir / "gating"  # the gate's tune part is checked against the rejectors' one
    gate = read_gate(gate_folder) if "gating" in sources and (gate_folder / GATE_JSON).is_file() else None
    runs = {}
    for search in ("power", "grid"):
        run = changed(cfg, evaluate=changed(cfg.evaluate, search=search))
        runs[search] = evaluate_sources(run, reader, list(OBJECTIVE), gate)
    table = Table(title=f"{cfg.name}: AURC [0, 0.8] on test, {pages.describe(cfg.evaluate)}")
    for col in ("source", "method", "objective", "power", "grid", "change"):
        table.add_column(col, justify="left" if col in ("source", "method", "objective") else "right")
    for (source, method), aurcs in runs["power"].aurcs.items():
        key = aurc_key(OBJECTIVE[method], SPAN)
        a, b = aurcs[key], runs["grid"].aurcs[(source, method)][key]
        table.add_row(source, method, OBJECTIVE[method], f"{a:.4f}", f"{b:.4f}", f"{100 * (b - a) / a:+.1f}%")
    cli.console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
