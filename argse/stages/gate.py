"""The gate's stage: ``gate.json`` (and ``gate.safetensors`` for a learned gate) and the mixture's logits of
every split (source ``gating``, argse.logits/1), made from the experts' stages by argse.gating.pipeline;
``python -m argse.train_gating`` is the command. A gate this config already has is found, not trained again.
"""

from __future__ import annotations

from dataclasses import dataclass

from argse.config.sections import RunConfig
from argse.core import distributed
from argse.data.logits import SourceReader, split_file, write_logits
from argse.gating.pipeline import SPLITS, GatingRun
from argse.gating.pipeline import run as train_gate
from argse.stages.experts import MANIFEST
from argse.stages.gate_file import read_gate, write_gate
from argse.stages.run import GATE, TRAIN_GATING, RunStages
from argse.stages.store import Stage


@dataclass
class GateBuild:
    stage: Stage
    trained: GatingRun | None  # None: found, not trained now

    @property
    def reports(self) -> dict[str, dict]:
        """Each expert, the constant mixtures and the gate on test, as gate.json records them."""
        return self.trained.reports if self.trained is not None else read_gate(self.stage.folder).info["test"]


def reader_of(stages: RunStages, names: list[str], splits: list[str]) -> SourceReader:
    """The sources' logits as this config's stages hold them, checked against its split manifest."""
    folders = {n: stages.source(n).folder for n in names}
    return SourceReader(folders, splits, stages.splits().file(MANIFEST))


def build_gate(cfg: RunConfig, console, rebuild: bool = False) -> GateBuild:
    """The gate over the config's experts: found (unless ``rebuild``), or trained and published with its mixture."""
    stages = RunStages(cfg)
    key = stages.gate_key()
    found = stages.store.find(key)
    if found is not None and not rebuild:
        console.print(f"gate: found {found.folder} (made from this config; not trained again)")
        link(stages, found)
        return GateBuild(found, None)
    reader = reader_of(stages, list(cfg.experts), list(SPLITS))
    for name in cfg.experts:
        console.print(f"read: {reader.folders[name]}")
    with stages.store.building(key) as work:
        trained = train_gate(cfg, reader)
        write_gate(work, trained.info, trained.network)
        for split in SPLITS:
            f = trained.data[split].files[0]
            write_logits(
                split_file(work, split), trained.mixture(split), f.labels, f.indices, expert=GATE,
                dataset=f.dataset, split=split, temperature=1.0, class_counts=f.class_counts,
                splits_sha256=f.splits_sha256, config={"experts": trained.names, **cfg.gating.model_dump()},
            )  # fmt: skip
        stage = stages.store.publish(key, work, TRAIN_GATING)
    link(stages, stage)
    return GateBuild(stage, trained)


def link(stages: RunStages, stage: Stage) -> None:
    """``outputs/NAME/gating`` and ``outputs/NAME/logits/gating`` lead to the gate's stage."""
    if distributed.is_writer():
        stages.store.link("gating", stage)
        stages.store.link(f"logits/{GATE}", stage)
