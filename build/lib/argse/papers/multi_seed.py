"""Reproducing a run end to end for one seed (experts, gate, the selective evaluation in every
(test prior, protocol) view) and the checks a results page shows; ``python -m argse.reproduce``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from argse.config.schema import changed
from argse.config.sections import RunConfig
from argse.core import terminal
from argse.data.groups import TAIL
from argse.data.metrics import source_reports
from argse.reports import pages
from argse.selective.sweep import aurc_key
from argse.stages import experts as expert_stages
from argse.stages.evaluation import build_evaluation
from argse.stages.gate import build_gate, reader_of
from argse.stages.run import GATE, RunStages

# Every combination of the two settings the paper's comparison depends on: (test prior, protocol).
VIEWS = [("train", "argse"), ("train", "paper"), ("balanced", "argse"), ("balanced", "paper")]
# The AURC the page's checks compare: balanced error over the paper's range of rejection rates.
BALANCED_AURC = aurc_key("balanced_error", "0-0.8")


@dataclass
class SeedResult:
    """One seed's accuracy reports per source and AURCs per view and (source, method)."""

    reports: dict[str, dict[str, float]]
    aurcs: dict[tuple[str, str], dict[tuple[str, str], dict[str, float]]]
    evaluation: Path  # the evaluation stage in the run's own view
    sources: dict[str, Path]  # each source's stage


def run_seed(cfg: RunConfig, train: bool, rebuild: bool = False) -> SeedResult:
    """Train (unless ``train`` is false), gate and evaluate one seed: each stage found or made."""
    console = terminal.console()
    if train:
        expert_stages.run(cfg, cfg.experts, rebuild=rebuild)
    gating = build_gate(cfg, console)
    console.print(pages.mixture_table(f"{cfg.name}: gating on test (%; NLL in nats)", gating.reports))
    names = cfg.experts + [GATE]
    stages = RunStages(cfg)
    reader = reader_of(stages, names, ["test"])
    reports = source_reports([reader.read(n, "test") for n in names], cfg.data)
    aurcs, own = {}, (cfg.evaluate.test_prior, cfg.evaluate.protocol)
    for prior, protocol in sorted(VIEWS, key=lambda v: v == own):  # the run's own view last: evaluation/ leads to it
        view = changed(cfg, evaluate=changed(cfg.evaluate, test_prior=prior, protocol=protocol))
        build_gate(view, console)  # the same gate unless its objective trains under the view's prior
        built = build_evaluation(view, names, console)
        aurcs[(prior, protocol)] = built.aurcs
        if (prior, protocol) == own:
            evaluation = built.stage.folder
    return SeedResult(reports, aurcs, evaluation, reader.folders)


def claims(runs: list[SeedResult]) -> list[str]:
    """The checks the page must show, on seed means, each with its numbers."""

    def mean(get) -> float:
        return sum(get(r) for r in runs) / len(runs)

    out = []
    reports = runs[0].reports
    for name in (n for n in reports if n not in ("ce", "gating") and "ce" in reports):
        tail = mean(lambda r, n=name: r.reports[n][TAIL] - r.reports["ce"][TAIL])
        bal = mean(lambda r, n=name: r.reports[n]["balanced_acc"] - r.reports["ce"]["balanced_acc"])
        ok = tail > 0 and bal > 0
        out.append(
            f"- {'PASS' if ok else 'FAIL'}: `{name}` vs ce: tail {100 * tail:+.2f}, balanced {100 * bal:+.2f} points"
        )
    for view in (("train", "paper"), ("train", "argse")):
        for source in ("ce", "gating"):
            if (source, "chow") not in runs[0].aurcs[view]:
                continue
            chow = mean(lambda r, s=source, v=view: r.aurcs[v][(s, "chow")][BALANCED_AURC])
            pb = mean(lambda r, s=source, v=view: r.aurcs[v][(s, "plugin_balanced")][BALANCED_AURC])
            out.append(
                f"- {'PASS' if pb < chow else 'FAIL'}: {source}, prior {view[0]}, protocol {view[1]}: plugin_balanced "
                f"balanced AURC {pb:.4f} vs chow {chow:.4f}"
            )
    return out
