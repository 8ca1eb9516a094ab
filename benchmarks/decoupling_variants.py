"""Stage 1 versus the decoupling classifiers (cRT, tau-norm, LWS) on one run's data.

    python -m benchmarks.decoupling_variants --config configs/cifar10_lt_cpu.yaml

Stage 1 is the run's finished ``ce`` expert (stage1_from: ce); each variant retrains only the
classifier (into checkpoints/<run>/decoupling_variants/<variant>/) and is scored on ``test``.
Nothing of the run's own outputs is touched.
"""

from __future__ import annotations

import argparse
import time

from rich.table import Table

from argse import cli
from argse.config import load_run_config
from argse.data import prepare_data
from argse.experts import ExpertContext, build_expert
from argse.metrics import classification_report
from argse.training import resolve_device


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--only", default=None, help="comma list of variant labels to run (default: all)")
    args = p.parse_args(argv)
    cfg = load_run_config(args.config, args.overrides + ["runtime.progress=false"])
    data = prepare_data(cfg)
    ctx = ExpertContext(cfg, data, resolve_device(cfg.runtime))
    test = data.held_out["test"]
    rows = {}
    variants = {
        "stage 1 (ce)": None,
        "cRT": {"classifier": "crt"},
        "tau-norm": {"classifier": "tau_norm"},
        "LWS": {"classifier": "lws"},
        "cRT, bn rebalanced": {"classifier": "crt", "bn": "rebalanced"},
    }
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only.split(",")}
    for label, change in variants.items():
        expert = build_expert("decoupling", ctx, stage1_from="ce", **(change or {}))
        expert.ckpt_dir = cfg.ckpt_dir / "decoupling_variants" / "".join(c if c.isalnum() else "_" for c in label)
        start = time.perf_counter()
        expert.stage1()
        if change is not None:
            expert.stage2()
        seconds = time.perf_counter() - start
        rep = classification_report(expert.predict_split(test), test.labels, data.class_counts, data.groups, data.shots)
        rows[label] = rep | {"seconds": seconds, "tau": getattr(expert, "tau", None)}

    table = Table(title=f"{cfg.name}: decoupling classifiers on test (%)")
    for c in ("classifier", "head", "tail", "balanced_acc", "many", "medium", "few", "stage-2 s"):
        table.add_column(c, justify="left" if c == "classifier" else "right")
    for label, r in rows.items():
        name = label + (f" (tau={r['tau']:.1f})" if r["tau"] is not None else "")
        table.add_row(
            name,
            *(f"{100 * r[c]:.2f}" for c in ("head", "tail", "balanced_acc", "many", "medium", "few")),
            f"{r['seconds']:.1f}",
        )
    cli.console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
