"""``TrainRecipe``, one optimisation schedule, and the learning-rate factor it implies per step."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from argse.config.schema import Section, seed_field
from argse.training.samplers import get_sampler


class TrainRecipe(Section):
    """One optimisation schedule (defaults: Cao et al. 2019, CIFAR-LT ResNet-32). Each value an optimiser or
    layer would refuse mid-run (a torch traceback), or that would silently do nothing (a milestone after the
    last epoch), is refused when the recipe is read."""

    epochs: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=1)
    """The global batch: under torchrun each of N ranks takes batch_size / N of it."""
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    """Nesterov momentum (Menon et al.'s logit-adjustment code uses it)."""
    weight_decay: float = Field(2e-4, ge=0)
    warmup_epochs: int = Field(5, ge=0)
    """Linear warm-up from lr/steps to lr over this many epochs (at most the epochs)."""
    schedule: Literal["multistep", "cosine"] = "multistep"
    """After warm-up: multistep (x gamma at each milestone) or cosine decay to 0 (per step)."""
    milestones: list[int] = [160, 180]
    gamma: float = Field(0.01, gt=0)
    """multistep: multiply the lr by gamma at each milestone epoch."""
    sampler: str = "instance"
    """A registered sampler (argse.training.samplers): instance (a shuffled pass), balanced (every
    class equally likely per draw), or one a plugin registers."""
    augment: bool = True
    """Random crop (padding 4) and horizontal flip."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout before the classifier."""
    checkpoint: Literal["best_val", "last"] = "last"
    """The weights an expert keeps and exports: the epoch with the best validation balanced accuracy, or the
    last epoch (what each expert's paper reports: experts/*.yaml say which, and why)."""

    @field_validator("sampler")
    @classmethod
    def _registered(cls, name: str) -> str:
        get_sampler(name)  # an unknown name fails here, when the config is read
        return name

    @model_validator(mode="after")
    def _check(self) -> TrainRecipe:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0, got momentum 0")
        # A longer warm-up never reaches lr; one as long as training peaks at its last step (tiny test runs).
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs must lie in [0, epochs={self.epochs}] (no longer than training), got "
                f"{self.warmup_epochs}"
            )
        if sorted(self.milestones) != self.milestones:
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        # A milestone past the last epoch never fires (silently no decay); one at the end is a harmless no-op.
        late = [m for m in self.milestones if not 0 < m <= self.epochs]
        if self.schedule == "multistep" and late:  # cosine ignores the milestones
            raise ValueError(
                f"milestones must lie within the epochs (0 < m <= epochs={self.epochs}), got {late[0]}; "
                f"lower it or set milestones=[]"
            )
        return self


def trained_by(recipe: BaseModel) -> dict:
    """What of a recipe trains its model: every field but its ``selection_fields``, those that only choose among
    models (argse.table2's grids). Stage keys, checkpoints and exported records hold this, so a change of grid
    retrains nothing already trained."""
    return recipe.model_dump(exclude=set(getattr(type(recipe), "selection_fields", ())))


class ExpertRecipe(TrainRecipe):
    """The recipe of a one-stage expert: a schedule plus the expert's own seed."""

    seed: int | None = seed_field(None)
    """Base seed of this expert's initial weights, data order and augmentation; default: derived
    from the run seed and the expert's name (argse.core.seeds.expert_seed)."""


def lr_factor(step: int, steps_per_epoch: int, recipe: TrainRecipe) -> float:
    """The learning rate at optimiser step ``step`` as a fraction of ``recipe.lr``."""
    warm = recipe.warmup_epochs * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    if recipe.schedule == "cosine":
        total = recipe.epochs * steps_per_epoch
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))
    epoch = step // steps_per_epoch
    return recipe.gamma ** sum(epoch >= m for m in recipe.milestones)
