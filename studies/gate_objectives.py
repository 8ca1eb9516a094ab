"""Is the selective gate worth it? AURC of the NLL gate, the selective gates and single experts.

``python -m studies.gate_objectives --config RUN.yaml --work DIR [--set ...]`` reads the expert logits of
the run (``output_dir``/``name``), and for each test prior (train, balanced) and gate objective
(balanced_nll, selective_balanced, selective_worst) imports them into a run of its own under
DIR/<prior>/<objective>/ (``python -m argse.stages import``), trains the gate there and evaluates every
source, so no setting's gate or evaluation is another's run's. It prints one markdown table of balanced and
worst-group AURC over [0, 0.8] on ``test``. Everything is fitted on ``tune`` and ``val``; ``test`` only
measures.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from argse.config.loading import load_run_config
from argse.core import storage, terminal
from argse.data.logits import run_folders, run_manifest, split_file
from argse.stages.evaluation import build_evaluation
from argse.stages.gate import build_gate
from argse.stages.manage import import_run
from argse.stages.run import GATE, RunStages

OBJECTIVES = ("balanced_nll", "selective_balanced", "selective_worst")
PRIORS = ("train", "balanced")
SPLITS = ("val", "tune", "test")


def run_one(args, prior: str, objective: str, experts: list[str]) -> dict:
    cfg = load_run_config(args.config, args.overrides)
    work = Path(args.work) / prior / objective
    sets = [*args.overrides, f"output_dir={work}", f"experts=[{','.join(experts)}]", f"evaluate.test_prior={prior}",
            f"gating.objective={objective}"]  # fmt: skip
    setting = load_run_config(args.config, sets)
    with tempfile.TemporaryDirectory(prefix=".gate_objectives-", dir=storage.make_dir(work)) as tmp:
        # The experts' logits and the split manifest alone (not the run's own gate, made under other settings).
        folder = Path(tmp)
        shutil.copy(run_manifest(cfg.out_dir), storage.make_dir(folder) / "splits.json")
        for e, source in run_folders(cfg.out_dir, experts).items():
            for split in SPLITS:
                shutil.copy(split_file(source, split), storage.make_dir(folder / "logits" / e))
        import_run(RunStages(setting), folder, None)
    console = terminal.console()
    build_gate(setting, console)
    sources = [*experts, GATE] if objective == "balanced_nll" else [GATE]
    return build_evaluation(setting, sources, console).aurcs  # each setting's own report, under --work


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
