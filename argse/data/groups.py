"""Named groups of classes: head/tail by ``data.tail_max_count``, many/medium/few by shot counts.

Every tool builds its groups here and looks a group up by its name ("head", "tail", "many", ...),
never by its position, so that a partition may hold any number of named groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from argse.config.sections import DataConfig

HEAD, TAIL = "head", "tail"
MANY, MEDIUM, FEW = "many", "medium", "few"


@dataclass
class Groups:
    """A partition of the classes into named groups."""

    names: list[str]
    of_class: torch.Tensor  # int64 [C], position in ``names`` of each class's group

    @property
    def k(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of group ``name``; the one place where a name becomes an index."""
        if name not in self.names:
            raise KeyError(f"no group '{name}' among {', '.join(self.names)}")
        return self.names.index(name)

    def classes_in(self, name: str) -> torch.Tensor:
        """Boolean mask [C] of the classes in group ``name``."""
        return self.of_class == self.index(name)

    def size(self, name: str) -> int:
        """How many classes group ``name`` holds."""
        return int(self.classes_in(name).sum())

    def sample_masks(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """{group name: boolean mask [N] of the samples whose label is in that group}."""
        return {name: self.of_class[labels] == k for k, name in enumerate(self.names)}

    def class_group(self) -> np.ndarray:
        """Group position of each class as a numpy array, the form the rejectors take."""
        return self.of_class.numpy()


def head_tail_groups(class_counts: torch.Tensor, tail_max_count: int) -> Groups:
    """Tail: classes with at most ``tail_max_count`` training images; head: the others."""
    return Groups([HEAD, TAIL], (class_counts <= tail_max_count).long())


def shot_groups(class_counts: torch.Tensor, many_min_count: int, few_max_count: int) -> Groups:
    """Many-shot: more than ``many_min_count`` images; few-shot: fewer than ``few_max_count``; medium: the rest."""
    of_class = torch.ones_like(class_counts)
    of_class[class_counts > many_min_count] = 0
    of_class[class_counts < few_max_count] = 2
    return Groups([MANY, MEDIUM, FEW], of_class)


def run_groups(class_counts, data: DataConfig) -> tuple[Groups, Groups]:
    """The run's (head/tail, many/medium/few) partitions of classes with training counts ``class_counts``."""
    counts = torch.as_tensor(class_counts)
    return (
        head_tail_groups(counts, data.tail_max_count),
        shot_groups(counts, data.many_min_count, data.few_max_count),
    )
