"""Decoupling's stage 2, variant by variant, on one run's data and one stage 1.

    python -m benchmarks.decoupling_variants --config configs/cifar10_lt_cpu.yaml [--out docs/results/decoupling_variants.md]

Stage 1 is the run's finished ``ce`` expert (stage1_from: ce). Each variant retrains only the
classifier (into checkpoints/<run>/decoupling_variants/<variant>/) and is scored on ``test``:
the one-view feature cache (argse's default), caches of several augmented views, and Kang et
al.'s own stage 2 (augmented images through the frozen backbone with BatchNorm in train mode,
no cache), each for cRT and LWS, plus tau-norm (no training). Nothing of the run's own outputs
is touched.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from rich.table import Table

from argse import cli, storage
from argse.config import load_run_config
from argse.data import prepare_data
from argse.experts import ExpertContext, build_expert, get_expert, load_recipe
from argse.metrics import classification_report
from argse.training import resolve_device

COLUMNS = ("head", "tail", "balanced_acc")


def variants(views: list[int]) -> dict[str, dict | None]:
    """Label -> changes to the decoupling recipe (None: stage 1 alone)."""
    out: dict[str, dict | None] = {"stage 1 (ce)": None, "tau-norm": {"classifier": "tau_norm"}}
    for clf, label in (("crt", "cRT"), ("lws", "LWS")):
        cached = {"classifier": clf, "bn": "frozen", "feature_cache": True}  # whatever the run's recipe says
        out[f"{label}, 1-view cache"] = cached
        for v in views:
            out[f"{label}, {v}-view cache"] = cached | {"cache_views": v, "augment": True}
        kang = {"classifier": clf, "bn": "rebalanced", "feature_cache": False, "augment": True}
        out[f"{label}, Kang (augment, BN train, no cache)"] = kang
    return out


def run_variant(ctx: ExpertContext, base, label: str, change: dict | None) -> dict:
    """Stage 2 of one variant from the run's ce; its test report, stage-2 seconds and best epoch."""
    change = dict(change or {})
    augment = change.pop("augment", False)
    expert = build_expert("decoupling", ctx, stage1_from="ce", stage2=replace(base.stage2, augment=augment), **change)
    expert.ckpt_dir = ctx.config.ckpt_dir / "decoupling_variants" / "".join(c if c.isalnum() else "_" for c in label)
    expert.stage1()
    start = time.perf_counter()
    if label != "stage 1 (ce)":
        expert.stage2()
    seconds = time.perf_counter() - start
    d, test = ctx.data, ctx.data.held_out["test"]
    report = classification_report(expert.predict_split(test), test.labels, d.class_counts, d.groups, d.shots)
    best = getattr(expert, "stage2_best", None)
    return report | {
        "seconds": seconds,
        "tau": getattr(expert, "tau", None),
        "best_epoch": best["epoch"] if best else None,
        "val_balanced_acc": best["val"]["balanced_acc"] if best else None,
    }


def markdown(title: str, rows: dict[str, dict], epochs: int) -> str:
    lines = [
        f"## {title}",
        "",
        f"| stage 2 | head | tail | balanced | val balanced | best epoch (of {epochs}) | stage-2 s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        name = label + (f" (tau={r['tau']:.1f})" if r["tau"] is not None else "")
        val = f"{100 * r['val_balanced_acc']:.2f}" if r["val_balanced_acc"] is not None else "-"
        lines.append(
            f"| {name} | " + " | ".join(f"{100 * r[c]:.2f}" for c in COLUMNS) + f" | {val} | "
            f"{r['best_epoch'] or '-'} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def console_table(title: str, rows: dict[str, dict]) -> Table:
    table = Table(title=title)
    for c in ("stage 2", *COLUMNS, "val balanced", "best epoch", "stage-2 s"):
        table.add_column(c, justify="left" if c == "stage 2" else "right")
    for label, r in rows.items():
        table.add_row(
            label + (f" (tau={r['tau']:.1f})" if r["tau"] is not None else ""),
            *(f"{100 * r[c]:.2f}" for c in COLUMNS),
            f"{100 * r['val_balanced_acc']:.2f}" if r["val_balanced_acc"] is not None else "-",
            str(r["best_epoch"] or "-"),
            f"{r['seconds']:.0f}",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--views", default="3,10", help="comma list of cache sizes (augmented views per image)")
    p.add_argument("--only", default=None, help="semicolon list of variant labels to run (default: all)")
    p.add_argument("--out", default=None, help="also write the table as markdown here")
    args = p.parse_args(argv)
    cfg = load_run_config(args.config, args.overrides + ["runtime.progress=false"])
    ctx = ExpertContext(cfg, prepare_data(cfg), resolve_device(cfg.runtime))
    base = load_recipe(get_expert("decoupling"), cfg)
    todo = variants([int(v) for v in args.views.split(",")])
    if args.only:
        todo = {k: v for k, v in todo.items() if k in args.only.split(";")}
    rows = {}
    for label, change in todo.items():
        rows[label] = run_variant(ctx, base, label, change)
        cli.console().print(
            f"{label}: balanced {100 * rows[label]['balanced_acc']:.2f} in {rows[label]['seconds']:.0f} s"
        )
    title = f"{cfg.name}: decoupling stage 2 on test (%)"
    cli.console().print(console_table(title, rows))
    if args.out:
        storage.write_text(args.out, markdown(title, rows, base.stage2.epochs))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
