"""Does the prior the temperature is fitted under matter to the selective figures?

    python -m studies.temperature_prior --config RUN.yaml [--set ...] [--sources ce,logit_adjust]

argse fits each expert's temperature on the class-balanced ``val`` split, while every AURC is taken under
the training prior (evaluate.test_prior: train). This study refits each expert's temperature on ``val`` with
every sample weighted by pi_train(y) / pi_split(y), the weights the evaluation uses, then sweeps the same
rejectors on the same samples with either temperature, and prints both AURCs with the paired 95% bootstrap
interval of their difference over the same resamples of test (argse.selective.curve_metrics).
"""

from __future__ import annotations

import dataclasses

import torch

from argse import cli
from argse.data.groups import head_tail_groups
from argse.data.metrics import lt_weights
from argse.data.splits import tune_parts
from argse.experts.calibration import fit_temperature
from argse.reports.uncertainty import paired
from argse.selective.sweep import Extras, fit_options, source_view, sweep_grid, sweep_source
from argse.stages.gate import reader_of
from argse.stages.run import RunStages


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--sources", default=None, help="experts (default: the config's)")
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    sources = cli.split_names(args.sources) or cfg.experts
    reader = reader_of(RunStages(cfg), sources, ["val", "tune", "test"])
    ecfg = cfg.evaluate
    opts, grid = fit_options(ecfg), sweep_grid(ecfg)
    print("| source | method | T (balanced val) | T (val under the training prior) | balanced AURC | "
          "difference [95% paired] | worst-group AURC | difference [95% paired] |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for source in sources:
        val, tune, test = (reader.read(source, s) for s in ("val", "tune", "test"))
        counts = torch.tensor(val.class_counts)
        weighted = fit_temperature(val.logits, val.labels, weight=lt_weights(val.labels, counts))
        groups = head_tail_groups(counts, cfg.data.tail_max_count)
        _, fit_part = tune_parts(tune.labels, cfg.gating.tune_fraction, cfg.seed)
        extras = Extras.of(ecfg, test.labels.numpy())
        results = {}
        for name, t in (("balanced", tune.temperature), ("train", weighted)):
            fit = source_view(dataclasses.replace(tune, temperature=t), fit_part, groups, ecfg)
            held = source_view(dataclasses.replace(test, temperature=t), torch.arange(len(test.labels)), groups, ecfg)
            results[name] = sweep_source(fit, held, list(ecfg.methods), opts, grid, None, extras)
        for method in ecfg.methods:
            cells = []
            for red in ("balanced_error", "worst_group_error"):
                a, b = (results[k][method][1] for k in ("balanced", "train"))
                lo, hi = paired(b.draws[red]["aurc"], a.draws[red]["aurc"], ecfg.confidence)
                va, vb = a.figures[red]["aurc"], b.figures[red]["aurc"]
                cells += [f"{va:.4f} -> {vb:.4f}", f"{vb - va:+.4f} [{lo:+.4f}, {hi:+.4f}]" + "*" * (lo > 0 or hi < 0)]
            print(f"| {source} | {method} | {tune.temperature:.3f} | {weighted:.3f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
