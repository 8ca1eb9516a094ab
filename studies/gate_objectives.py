"""Is the selective gate worth it? AURC of the NLL gate, the selective gates and single experts.

``python -m studies.gate_objectives --config RUN.yaml --work DIR [--set ...]`` reads the expert logits of
the run (``output_dir``/``name``), and for each test prior (train, balanced) and gate objective
(balanced_nll, selective_balanced, selective_worst) trains the gate and evaluates every source in
DIR/<prior>/<objective>/, so no run overwrites another. It prints one markdown table of balanced and
worst-group AURC over [0, 0.8] on ``test``. Everything is fitted on ``tune`` and ``val``; ``test`` only
measures.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from argse import reporting
from argse.config import load_run_config
from argse.evaluation import evaluate_sources
from argse.gating import pipeline

OBJECTIVES = ("balanced_nll", "selective_balanced", "selective_worst")
PRIORS = ("train", "balanced")


def run_one(args, prior: str, objective: str, experts: list[str]) -> dict:
    cfg = load_run_config(args.config, args.overrides)
    work = Path(args.work) / prior / objective
    dst = work / cfg.name
    for e in experts:
        if not (dst / "logits" / e).is_dir():
            shutil.copytree(cfg.out_dir / "logits" / e, dst / "logits" / e)
    if (cfg.out_dir / "splits.json").is_file():  # evaluate checks the logits against it
        shutil.copy(cfg.out_dir / "splits.json", dst / "splits.json")
    sets = [*args.overrides, f"output_dir={work}", f"evaluate.test_prior={prior}", f"gating.objective={objective}"]
    cfg = load_run_config(args.config, sets)
    pipeline.run(cfg, experts)
    sources = [*experts, "gating"] if objective == "balanced_nll" else ["gating"]
    ev = evaluate_sources(cfg, sources, cfg.evaluate.methods)
    reporting.write_evaluation(cfg, ev)  # each setting's own report, under --work
    return ev.aurcs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--experts", default="ce,logit_adjust,decoupling")
    args = p.parse_args(argv)
    experts = args.experts.split(",")
    rows = [
        "| test prior | gate objective | source | method | balanced AURC | worst-group AURC |",
        "|---|---|---|---|---|---|",
    ]
    for prior in PRIORS:
        for objective in OBJECTIVES:
            for (source, method), a in run_one(args, prior, objective, experts).items():
                if method == "chow" and source == "gating":
                    continue
                label = objective if source == "gating" else "-"
                rows.append(f"| {prior} | {label} | {source} | {method} | {a['balanced_error@0-0.8']:.4f} | "
                            f"{a['worst_group_error@0-0.8']:.4f} |")  # fmt: skip
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
