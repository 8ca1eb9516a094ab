"""An evaluation's stage: every rejector fitted on the rejector part of ``tune`` and measured on ``test``
(argse.selective.sweep), written as report.json, rules.json, rc_curves.csv, rc_curves.png and summary.md;
``python -m argse.evaluate`` is the command.

Its id holds the evaluate settings and the content of each evaluated source, so evaluating other sources,
or the same ones after one was trained again, is another stage; nothing is merged. An evaluation this
config already has is found, not run again.
"""

from __future__ import annotations

from dataclasses import dataclass

from argse.config.sections import RunConfig
from argse.core import distributed
from argse.reports.pages import write_evaluation
from argse.reports.report_file import read_report
from argse.selective.sweep import Evaluation, check_fit_sample, evaluate_sources
from argse.stages.gate import reader_of
from argse.stages.gate_file import read_gate
from argse.stages.run import EVALUATE, GATE, RunStages
from argse.stages.store import Stage


@dataclass
class EvaluationBuild:
    stage: Stage
    evaluation: Evaluation | None  # None: found, not run now

    @property
    def aurcs(self) -> dict[tuple[str, str], dict[str, float]]:
        """AURCs per (source, method), as report.json records them."""
        if self.evaluation is not None:
            return self.evaluation.aurcs
        return {(r.source, r.method): dict(r.aurc) for r in read_report(self.stage.folder).results}

    @property
    def intervals(self) -> dict[tuple[str, str], dict]:
        """The bootstrap intervals of each (source, method)'s figures, as report.json records them."""
        if self.evaluation is not None:
            return self.evaluation.intervals
        return {(r.source, r.method): dict(r.intervals) for r in read_report(self.stage.folder).results}


def build_evaluation(cfg: RunConfig, sources: list[str], console, rebuild: bool = False) -> EvaluationBuild:
    """The evaluation of ``sources`` under this config: found (unless ``rebuild``), or run and published."""
    check_fit_sample(cfg.evaluate, sources)  # before any stage is looked for
    stages = RunStages(cfg)
    key = stages.evaluation_key(sources)
    found = stages.store.find(key)
    if found is not None and not rebuild:
        console.print(f"evaluation: found {found.folder} (made from this config; not run again)")
        link(stages, found)
        return EvaluationBuild(found, None)
    reader = reader_of(stages, sources, ["tune", "test"])
    for name in sources:
        console.print(f"read: {reader.folders[name]}")
    gate = read_gate(stages.gate().folder) if GATE in sources else None
    with stages.store.building(key) as work:
        ev = evaluate_sources(cfg, reader, cfg.evaluate.methods, gate)
        write_evaluation(work, cfg, ev)
        command = EVALUATE + ("" if sources == stages.default_sources() else f" --sources {','.join(sources)}")
        stage = stages.store.publish(key, work, command)
    link(stages, stage)
    return EvaluationBuild(stage, ev)


def evaluate(cfg: RunConfig, sources: list[str], methods: list[str]) -> Evaluation:
    """The evaluation of ``sources`` with ``methods``, computed from this config's stages and not published
    (the paper harnesses tabulate it)."""
    stages = RunStages(cfg)
    gate = read_gate(stages.gate().folder) if GATE in sources else None
    return evaluate_sources(cfg, reader_of(stages, sources, ["tune", "test"]), methods, gate)


def link(stages: RunStages, stage: Stage) -> None:
    """``outputs/NAME/evaluation`` leads to the evaluation made last (or found last)."""
    if distributed.is_writer():
        stages.store.link("evaluation", stage)
