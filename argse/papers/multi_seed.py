"""Reproducing a run end to end for one seed (experts, gate, the selective evaluation in every
(test prior, protocol) view) and the checks a results page shows; ``python -m argse.reproduce``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from argse.config.schema import changed
from argse.config.sections import DataConfig, RunConfig
from argse.core import terminal
from argse.data.groups import TAIL
from argse.data.logits import read_logits
from argse.data.metrics import paired_accuracy_draws, source_reports
from argse.data.splits import read_manifest
from argse.reports import pages
from argse.reports.uncertainty import DRAWS_FILE, read_draws
from argse.selective.curve_metrics import interval
from argse.selective.sweep import aurc_key
from argse.stages import experts as expert_stages
from argse.stages.evaluation import build_evaluation
from argse.stages.experts import MANIFEST
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
    evaluations: dict[tuple[str, str], Path] = field(default_factory=dict)  # the evaluation stage of every view
    classes: list[str] = field(default_factory=list)  # the class names, as the split manifest gives them


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
    aurcs, folders, own = {}, {}, (cfg.evaluate.test_prior, cfg.evaluate.protocol)
    for prior, protocol in sorted(VIEWS, key=lambda v: v == own):  # the run's own view last: evaluation/ leads to it
        view = changed(cfg, evaluate=changed(cfg.evaluate, test_prior=prior, protocol=protocol))
        build_gate(view, console)  # the same gate unless its objective trains under the view's prior
        built = build_evaluation(view, names, console)
        aurcs[(prior, protocol)], folders[(prior, protocol)] = built.aurcs, built.stage.folder
    classes = read_manifest(stages.splits().file(MANIFEST))["classes"]
    return SeedResult(reports, aurcs, folders[own], reader.folders, folders, classes)


def verdict(lo: float, hi: float) -> str:
    """A claim that the difference is positive: PASS when its interval is above 0, FAIL when below, else neither."""
    return "PASS" if lo > 0 else "FAIL" if hi < 0 else "WITHIN NOISE"


def paired_interval(draws: list[np.ndarray], level: float) -> tuple[float, float]:
    """The interval of the seeds' mean difference from each seed's paired draws (the test-sampling noise of the
    mean over seeds, the models held fixed)."""
    return interval(np.mean(draws, 0), level)


def claims(runs: list[SeedResult], data: DataConfig, level: float) -> list[str]:
    """The checks the page shows, on seed means, each with its paired bootstrap interval over test: every expert
    against ce on tail and balanced accuracy, Plug-in [Balanced] against Chow on balanced AURC."""

    def mean(get) -> float:
        return sum(get(r) for r in runs) / len(runs)

    out = []
    reports = runs[0].reports
    for name in (n for n in reports if n not in ("ce", "gating") and "ce" in reports):
        draws = [paired_accuracy_draws(*(read_logits(r.sources[s] / "test.safetensors") for s in (name, "ce")), data, i)
                 for i, r in enumerate(runs)]  # fmt: skip
        cells, verdicts = [], []
        for key, label in ((TAIL, "tail"), ("balanced_acc", "balanced")):
            d = mean(lambda r, n=name, k=key: r.reports[n][k] - r.reports["ce"][k])
            lo, hi = paired_interval([x[key] for x in draws], level)
            cells.append(f"{label} {100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]")
            verdicts.append(verdict(lo, hi))
        overall = "FAIL" if "FAIL" in verdicts else "PASS" if set(verdicts) == {"PASS"} else "WITHIN NOISE"
        out.append(f"- {overall}: `{name}` better than ce: {', '.join(cells)} points")
    for view in (("train", "paper"), ("train", "argse")):
        for source in ("ce", "gating"):
            if (source, "chow") not in runs[0].aurcs[view]:
                continue
            chow = mean(lambda r, s=source, v=view: r.aurcs[v][(s, "chow")][BALANCED_AURC])
            pb = mean(lambda r, s=source, v=view: r.aurcs[v][(s, "plugin_balanced")][BALANCED_AURC])
            files = [r.evaluations[view] / DRAWS_FILE for r in runs]
            spread, mark = " (no interval: evaluate.bootstrap is 0)", "PASS" if pb < chow else "FAIL"
            if all(f.is_file() for f in files):
                draws = [read_draws(f) for f in files]
                key = lambda m, s=source: (s, m, "balanced_error", "aurc")  # noqa: E731
                lo, hi = paired_interval([d[key("chow")] - d[key("plugin_balanced")] for d in draws], level)
                spread, mark = f", chow - plugin_balanced {chow - pb:+.4f} [{lo:+.4f}, {hi:+.4f}]", verdict(lo, hi)
            out.append(
                f"- {mark}: {source}, prior {view[0]}, protocol {view[1]}: plugin_balanced below chow on balanced "
                f"AURC: {pb:.4f} vs {chow:.4f}{spread}"
            )
    note = (f"Each difference with its {100 * level:g}% paired bootstrap interval over resamples of test (both sides "
            f"on the same resamples; over several seeds, of the seeds' mean): PASS where the interval lies on the "
            f"claimed side of 0, FAIL where it lies on the other, WITHIN NOISE where it holds 0.\n")  # fmt: skip
    return [note, *out]
