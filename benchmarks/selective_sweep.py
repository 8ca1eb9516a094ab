"""One row of the selective class-count sweep, in its own process so that its peak memory is its own.

    python -m benchmarks.selective_sweep --classes 1000 --tune 20000 --test 20000 --sources 6 [--reference]

Hand-made logits of the given size (one [N, C] float32 array per split, shared by the sources, as argse's
reader holds one file per thread); the rejectors fit on the rejector half of ``tune`` as ``argse.evaluate``
does (gating.tune_fraction 0.5). argse's path: per-group summaries in row blocks, the sweep of every method,
the sources in one process per core (evaluation.source_pool). ``--reference``: today's implementation as it was (benchmarks/
selective_reference.py): the float64 softmax of the whole split, then the sweep, one source after another.
Prints one JSON line: seconds (the views and the sweeps) and peak RSS in MiB.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path

import torch

from argse.config.sections import EvaluateConfig
from argse.data.groups import head_tail_groups
from argse.data.logits import LogitsFile
from argse.data.metrics import lt_weights
from argse.selective.sweep import Extras, cpu_count, fit_options, source_pool, source_view, sweep_grid, sweep_source
from benchmarks import selective_reference as reference

METHODS = ("chow", "plugin_balanced", "plugin_worst")


def hand_made(n: int, classes: int, counts: list[int], seed: int) -> LogitsFile:
    """Logits whose true class is lifted by a random margin: accuracy and confidence vary across samples."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    logits = torch.randn(n, classes, generator=g)
    logits[torch.arange(n), labels] += 4.0 * torch.rand(n, generator=g)
    return LogitsFile(Path("-"), logits, labels, torch.arange(n), "x", "d", "s", classes, 1.3, counts, "s", {})


def argse_path(tune, test, sources: int, groups, ecfg: EvaluateConfig, workers: int, today: bool) -> None:
    opts, grid, fit_part = fit_options(ecfg), sweep_grid(ecfg), torch.arange(len(tune.labels) // 2)
    extras = Extras.of(ecfg, test.labels.numpy())
    if today:  # the search as the reference has it: no coarse grid, one start
        opts = dataclasses.replace(opts, coarse=0, starts=1)
    with source_pool(min(sources, workers)) as pool:
        jobs = []
        for _ in range(sources):  # as evaluate_sources: the views here, the sweeps in the pool
            fit = source_view(tune, fit_part, groups, ecfg)
            held = source_view(test, torch.arange(len(test.labels)), groups, ecfg)
            jobs.append(pool.submit(sweep_source, fit, held, list(METHODS), opts, grid, None, extras))
        for job in jobs:
            job.result()


def reference_path(tune: LogitsFile, test: LogitsFile, sources: int, groups, ecfg: EvaluateConfig) -> None:
    opts, grid, half = fit_options(ecfg), sweep_grid(ecfg), len(tune.labels) // 2

    def view(f: LogitsFile, rows: slice):
        probs, labels = f.probs, f.labels[rows]  # the whole split's float64 softmax, as before
        weight = lt_weights(labels, torch.tensor(f.class_counts)).numpy()
        return reference.group_view(probs[rows].numpy(), labels.numpy(), groups.class_group(), groups.k, weight)

    for _ in range(sources):
        fit, held = view(tune, slice(0, half)), view(test, slice(None))
        for m in METHODS:
            rows = []
            for rate in grid:
                rule = reference.fit_rule(m, fit, rate, opts)
                rows.append(reference.evaluate_rule(rule, held))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--tune", type=int, required=True)
    p.add_argument("--test", type=int, required=True)
    p.add_argument("--sources", type=int, default=6)
    p.add_argument("--reference", action="store_true")
    p.add_argument("--today", action="store_true", help="argse's path with the reference's search (no coarse grid)")
    p.add_argument("--workers", type=int, default=cpu_count(), help="argse's path: sources swept side by side")
    p.add_argument("--bootstrap", type=int, default=0, help="argse's path: resamples of test (evaluate.bootstrap)")
    p.add_argument("--ladders", action="store_true", help="argse's path: also the candidate rules of guarantees")
    args = p.parse_args(argv)
    counts = [max(1, int(500 * 100 ** (-i / max(1, args.classes - 1)))) for i in range(args.classes)]
    groups = head_tail_groups(torch.tensor(counts), tail_max_count=20)
    tune, test = (hand_made(n, args.classes, counts, seed) for seed, n in enumerate((args.tune, args.test)))
    start = time.perf_counter()
    if args.reference:
        reference_path(tune, test, args.sources, groups, EvaluateConfig())
    else:
        # The rows as they were: no bootstrap and no ladders unless asked for.
        guarantees = {} if args.ladders else {"guarantees": []}
        ecfg = EvaluateConfig(bootstrap=args.bootstrap, ladders=args.ladders, **guarantees)
        argse_path(tune, test, args.sources, groups, ecfg, min(args.sources, args.workers), args.today)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest sweep process
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, "worker_peak_rss_mib": workers}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
