"""Which way round is the paper's lambda? Both orientations of {1, 6, 11}, judged on the fitting sample.

    python -m studies.paper_lambda_sign --config configs/cifar10_lt.yaml [--source ce]

With ``protocol: paper`` and the run's test prior, fits ``plugin_balanced`` on the rejector part of
``tune`` with mu_tail = +lambda and with mu_tail = -lambda, and prints each one's balanced AURC
over [0, 0.8] on that same part. ``test`` is not read. Writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from argse import cli
from argse.config.loading import load_run_config
from argse.data.groups import head_tail_groups
from argse.data.logits import load_sources, run_folders, run_manifest
from argse.data.splits import tune_parts
from argse.selective.rejectors import fit_rule
from argse.selective.sweep import aurc_key, curve_aurcs, fit_options, source_view, sweep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--source", default="ce")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    cfg = load_run_config(args.config, [*args.overrides, "evaluate.protocol=paper"])
    f = load_sources(run_folders(cfg.out_dir, [args.source]), ["tune"], run_manifest(cfg.out_dir))["tune"][0]
    groups = head_tail_groups(torch.tensor(f.class_counts), cfg.data.tail_max_count)
    _, part = tune_parts(f.labels, cfg.gating.tune_fraction, cfg.seed)
    view = source_view(f, part, groups, cfg.evaluate)
    rates = [round(0.05 * i, 2) for i in range(17)]
    for sign in (1.0, -1.0):
        opts = dataclasses.replace(fit_options(cfg.evaluate), mu_grid=tuple(sign * x for x in (1, 6, 11)))
        rows = sweep(view, view, lambda v, r, o=opts: fit_rule("plugin_balanced", v, r, o), rates)
        aurc = curve_aurcs(rows)[aurc_key("balanced_error", "0-0.8")]
        cli.console().print(f"mu_tail = {'+' if sign > 0 else '-'}lambda: {args.source} plugin_balanced balanced AURC "
                            f"[0, 0.8] on its fitting sample (rejector part of tune): {aurc:.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
