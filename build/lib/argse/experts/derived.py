"""Experts computed from another expert's exported logits: no images, no training, seconds to run.

A subclass says how its parameters are chosen on ``val`` (:meth:`LogitsExpert.fit`) and how the
source's calibrated logits become its own (:meth:`LogitsExpert.adjust`). The source must be finished
first (``requires``, so ``--parallel`` waits for it): its export, given in the context, was made
from this run's splits. The result is exported in the argse.logits/1 format like any trained expert's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from argse.config.schema import Section, parse
from argse.config.sections import RunConfig
from argse.data.logits import LogitsFile, read_logits, split_file
from argse.data.splits import HELD_OUT
from argse.experts.base import Exported, get_expert
from argse.experts.calibration import fit_temperature


class DerivedRecipe(Section):
    source: str = "ce"
    """The expert of the same run whose exported logits this expert transforms."""


class LogitsExpert:
    """Base class of experts built from one source expert's exported logits."""

    name: ClassVar[str]
    Recipe: ClassVar[type] = DerivedRecipe

    def __init__(self, ctx: Any, recipe: DerivedRecipe, fitted: dict[str, Any] | None = None) -> None:
        self.ctx, self.recipe = ctx, recipe
        self.sources: dict[str, LogitsFile] = {}
        self.temperature: float | None = None
        self.fitted: dict[str, Any] = fitted or {}
        """The parameters :meth:`fit` chose; exported with the logits, so argse.predict can rebuild the expert."""

    @classmethod
    def requires(cls, recipe: DerivedRecipe) -> list[str]:
        return [recipe.source]

    # -- what subclasses change
    def fit(self, val: LogitsFile) -> dict[str, Any]:
        """Choose this expert's parameters on the source's ``val`` logits; returns them (JSON-able)."""
        return {}

    def adjust(self, calibrated: torch.Tensor, class_counts: list[int]) -> torch.Tensor:
        """This expert's logits from the source's calibrated logits [N, C], with the parameters in ``fitted``."""
        raise NotImplementedError

    def transform(self, source: LogitsFile) -> torch.Tensor:
        return self.adjust(source.calibrated, source.class_counts)

    # -- the Expert protocol
    def train(self) -> None:
        folder = self.ctx.finished(self.recipe.source).folder
        self.sources = {split: read_logits(split_file(folder, split)) for split in HELD_OUT}
        self.fitted = self.fit(self.sources["val"])

    def calibrate(self) -> float:
        val = self.sources["val"]
        self.temperature = fit_temperature(self.transform(val), val.labels)
        return self.temperature

    def held_out_logits(self) -> dict[str, torch.Tensor]:
        return {split: self.transform(src) for split, src in self.sources.items()}

    def export_record(self) -> dict:
        return self.recipe.model_dump() | {"fitted": self.fitted}

    # -- inference (argse.predict)
    @classmethod
    def for_inference(
        cls, cfg: RunConfig, exported: Exported, num_classes: int, device: torch.device
    ) -> tuple[nn.Module, float]:
        """The source's network, its temperature and this expert's adjustment, as recorded by the export."""
        f = exported.logits("test")
        record = {k: v for k, v in f.config.items() if k != "fitted"}
        expert = cls(None, parse(cls.Recipe, record, f"the export of {cls.name}"), f.config.get("fitted"))
        net, t_source = get_expert(expert.recipe.source).for_inference(cfg, exported.source, num_classes, device)
        return DerivedNet(net, t_source, expert, f.class_counts).eval(), f.temperature


class DerivedNet(nn.Module):
    """An expert built from another's logits, on images: the source network, its temperature, the adjustment."""

    def __init__(self, source: nn.Module, temperature: float, expert: LogitsExpert, counts: list[int]) -> None:
        super().__init__()
        self.source, self.temperature, self.expert, self.counts = source, temperature, expert, counts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expert.adjust(self.source(x).float() / self.temperature, self.counts)
