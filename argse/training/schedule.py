"""``TrainRecipe``, one optimisation schedule, and the learning-rate factor it implies per step."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from argse.core import seeds
from argse.training.samplers import get_sampler


@dataclass
class TrainRecipe:
    """One optimisation schedule (defaults: Cao et al. 2019, CIFAR-LT ResNet-32)."""

    epochs: int = 200
    batch_size: int = 128
    """The global batch: under torchrun each of N ranks takes batch_size / N of it."""
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    """Nesterov momentum (Menon et al.'s logit-adjustment code uses it)."""
    weight_decay: float = 2e-4
    warmup_epochs: int = 5
    """Linear warm-up from lr/steps to lr over this many epochs."""
    schedule: Literal["multistep", "cosine"] = "multistep"
    """After warm-up: multistep (x gamma at each milestone) or cosine decay to 0 (per step)."""
    milestones: list[int] = field(default_factory=lambda: [160, 180])
    gamma: float = 0.01
    """multistep: multiply the lr by gamma at each milestone epoch."""
    sampler: str = "instance"
    """A registered sampler (argse.training.samplers): instance (a shuffled pass), balanced (every
    class equally likely per draw), or one a plugin registers."""
    augment: bool = True
    """Random crop (padding 4) and horizontal flip."""
    dropout: float = 0.0
    """Dropout before the classifier."""
    checkpoint: Literal["best_val", "last"] = "last"
    """The weights an expert keeps and exports: the epoch with the best validation balanced accuracy, or the
    last epoch (what each expert's paper reports: experts/*.yaml say which, and why)."""

    def __post_init__(self) -> None:
        # Each value an optimiser or layer would refuse mid-run (a torch traceback), or that would silently
        # do nothing (a milestone after the last epoch), is refused when the recipe is read.
        _require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _require(0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}")
        _require(not self.nesterov or self.momentum > 0, f"nesterov needs momentum > 0, got momentum {self.momentum}")
        _require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        # A longer warm-up never reaches lr; one as long as training peaks at its last step (tiny test runs).
        _require(
            0 <= self.warmup_epochs <= self.epochs,
            f"warmup_epochs must lie in [0, epochs={self.epochs}] (no longer than training), got {self.warmup_epochs}",
        )
        _require(self.gamma > 0, f"gamma must be > 0, got {self.gamma}")
        _require(0 <= self.dropout < 1, f"dropout must lie in [0, 1), got {self.dropout}")
        if sorted(self.milestones) != self.milestones:
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        # A milestone past the last epoch never fires (silently no decay); one at the end is a harmless no-op.
        if self.schedule == "multistep":  # cosine ignores the milestones
            late = [m for m in self.milestones if not 0 < m <= self.epochs]
            _require(
                not late,
                f"milestones must lie within the epochs (0 < m <= epochs={self.epochs}), got {late[0] if late else ''}; "
                f"lower it or set milestones=[]",
            )
        get_sampler(self.sampler)  # an unknown name fails here, when the config is read


@dataclass
class ExpertRecipe(TrainRecipe):
    """The recipe of a one-stage expert: a schedule plus the expert's own seed."""

    seed: int | None = None
    """Base seed of this expert's initial weights, data order and augmentation; default: derived
    from the run seed and the expert's name (argse.core.seeds.expert_seed)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        seeds.check(self.seed)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


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
