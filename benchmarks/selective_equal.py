"""argse's rule search against the frozen reference (benchmarks/selective_reference.py) on a run's real logits.

    python -m benchmarks.selective_equal --run outputs/demo --tail-max-count 20

Both search as the reference did (no coarse grid, one start), fit on the rejector half of ``tune`` and measure on
``test``, every source, method and rate. A rule that differs by more than 1e-9 is shown with its objective on the
fitting sample under both (an exact tie when they agree within 1e-12); for plugin_worst also the first round of
Algorithm 2 (Algorithm 1 on S1), where a tie sends the two searches down different paths.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from argse.config.sections import EvaluateConfig
from argse.data.groups import head_tail_groups
from argse.data.logits import SourceReader, folder_sources, run_folders, run_manifest
from argse.data.metrics import lt_weights
from argse.data.splits import tune_parts
from argse.selective import rejectors, views
from argse.selective.sweep import curve_aurcs, fit_options, source_view, sweep, sweep_grid
from benchmarks import selective_reference as reference

METRIC = {"chow": "error", "plugin_balanced": "balanced_error", "plugin_worst": "worst_group_error"}


def reference_view(f, rows: torch.Tensor, groups) -> reference.GroupView:
    labels = f.labels[rows]
    weight = lt_weights(labels, torch.tensor(f.class_counts)).numpy()
    return reference.group_view(f.probs[rows].numpy(), labels.numpy(), groups.class_group(), groups.k, weight)


def reference_rows(method: str, fit, held, grid: list[float], opts) -> list[dict]:
    rows = []
    for rate in grid:
        rule = reference.fit_rule(method, fit, rate, opts)
        rows.append({"target_rate": rate, **reference.evaluate_rule(rule, held), "rule": rule})
    return rows


def normalised(alpha, b, t) -> np.ndarray:
    return np.concatenate([alpha, b, [t]]) / alpha[0]


def first_round(fit, ref_fit, rate: float, opts) -> str:
    """Algorithm 1 on S1 with beta = 1/K (Algorithm 2's first round) in both: the rules' distance and S1 objectives."""
    perm = np.random.default_rng(opts.seed).permutation(len(fit.group))
    s1, r1 = views.subset(fit, perm[: len(perm) // 2]), reference.subset(ref_fit, perm[: len(perm) // 2])
    beta = np.full(fit.k, 1.0 / fit.k)
    ours, theirs = rejectors.fit_plugin(s1, beta, rate, opts), reference.fit_plugin(r1, beta, rate, opts)
    objective = [float(reference.objectives(r1, r.alpha[None], r.b[None], rate, beta)[0][0]) for r in (ours, theirs)]
    distance = np.abs(normalised(ours.alpha, ours.b, ours.t) - normalised(theirs.alpha, theirs.b, theirs.t)).max()
    return f"first round: rules {distance:.3g} apart, S1 objective {objective[0]!r} vs {objective[1]!r}"


def compare_source(reader, source: str, tail_max_count: int, opts, grid) -> tuple[int, float, float, list[str]]:
    """Rules at rates above 0 compared, the largest gap among those within 1e-9, the largest AURC gap of curves
    whose rules all agree, and a line per rule that differs."""
    tune, test = reader.read(source, "tune"), reader.read(source, "test")
    groups = head_tail_groups(torch.tensor(tune.class_counts), tail_max_count)
    _, fit_part = tune_parts(tune.labels, 0.5, 0)
    ecfg, everything = EvaluateConfig(), torch.arange(len(test.labels))
    fit, held = source_view(tune, fit_part, groups, ecfg), source_view(test, everything, groups, ecfg)
    ref_fit, ref_held = reference_view(tune, fit_part, groups), reference_view(test, everything, groups)
    count, largest, aurc_gap, lines = 0, 0.0, 0.0, []
    for method, metric in METRIC.items():
        ours = sweep(fit, held, lambda v, r, m=method: rejectors.fit_rule(m, v, r, opts), grid)
        theirs = reference_rows(method, ref_fit, ref_held, grid, opts)
        for a, b in zip(ours, theirs, strict=True):
            if a["target_rate"] == 0:
                continue  # every candidate accepts the whole fitting sample: b is free (an exact tie)
            count += 1
            rb = b["rule"]
            gap = float(np.abs(normalised(np.array(a["alpha"]), np.array(a["b"]), a["threshold"])
                               - normalised(rb.alpha, rb.b, rb.t)).max())  # fmt: skip
            if gap <= 1e-9:
                largest = max(largest, gap)
                continue
            rule = reference.Rule(np.array(a["alpha"]), np.array(a["b"]), a["threshold"])
            fa, fb = (reference.evaluate_rule(r, ref_fit)[metric] for r in (rule, rb))
            line = (
                f"{source} {method} at {a['target_rate']:g}: rules {gap:.3g} apart; fitting {metric} {fa!r} vs {fb!r}"
            )
            if abs(fa - fb) <= 1e-12:
                line += " (an exact tie)"
            elif method == "plugin_worst":
                line += "; " + first_round(fit, ref_fit, a["target_rate"], opts)
            lines.append(line)
        if not any(line.startswith(f"{source} {method} ") for line in lines):
            theirs_aurcs = curve_aurcs(theirs)
            aurc_gap = max(aurc_gap, *(abs(x - theirs_aurcs[k]) for k, x in curve_aurcs(ours).items()))
    return count, largest, aurc_gap, lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a run's outputs folder (its logits/ and splits.json)")
    p.add_argument("--tail-max-count", type=int, required=True, help="the run's data.tail_max_count")
    args = p.parse_args(argv)
    ecfg = EvaluateConfig(search_grid=0, search_starts=1)
    opts, grid = fit_options(ecfg), sweep_grid(ecfg)
    sources = folder_sources(args.run)
    reader = SourceReader(run_folders(args.run, sources), ["tune", "test"], run_manifest(args.run))
    total, largest, aurc_gap, differ = 0, 0.0, 0.0, []
    for source in sources:
        count, gap, aurc, lines = compare_source(reader, source, args.tail_max_count, opts, grid)
        total, largest, aurc_gap, differ = total + count, max(largest, gap), max(aurc_gap, aurc), differ + lines
    for line in differ:
        print(line)
    print(f"{args.run}: {total} rules at rates above 0, {total - len(differ)} within 1e-9 of the reference "
          f"(largest difference {largest:.3g}), {len(differ)} apart; curves whose rules all agree: AURCs within "
          f"{aurc_gap:.3g} (rate 0, where b is free, included)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
