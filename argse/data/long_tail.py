"""Data core: long-tailed training sets, seeded held-out splits, and the split manifest
(the classes' groups are built by argse.groups).

Every dataset (argse.datasets) is reduced to the same thing: an "official" train and test set,
uint8 tensors [N, 3, H, W] or an ImageList. The training set is subsampled per class with the
exponential profile of Cao et al. (2019); the official test set is split per class into val /
tune / test. How an evaluation image is prepared (``eval_image``) is the dataset's to say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from argse.config.sections import RunConfig
from argse.data.datasets import Images, dataset_for
from argse.data.groups import Groups, run_groups
from argse.data.list_files import ImageList
from argse.data.splits import HELD_OUT, make_manifest, manifest_sha256

if TYPE_CHECKING:
    pass


@dataclass
class Split:
    images: Images
    labels: torch.Tensor  # int64 [N]
    indices: torch.Tensor  # int64 [N], index in the official train or test set


@dataclass
class LTData:
    dataset: str
    classes: list[str]
    class_counts: torch.Tensor  # int64 [C], training images per class
    train: Split
    held_out: dict[str, Split]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    manifest: dict
    sha256: str
    groups: Groups  # head / tail
    shots: Groups  # many / medium / few
    eval_prep: dict = field(default_factory=dict)
    """How the dataset prepares an evaluation image (Dataset.eval_prep): image_size, resize, crop."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------- sources


def prepare_data(run: RunConfig) -> LTData:
    """Load the dataset of a run, build its split manifest (argse.manifest), and return its tensors; the
    manifest is written by the stage that keeps it (argse.stages)."""
    cfg = run.data
    dataset = dataset_for(cfg)
    src = dataset.load()
    manifest = make_manifest(src, cfg, run.seed)
    sha = manifest_sha256(manifest)

    def take(images: Images, labels, idx) -> Split:
        idx = torch.tensor(idx, dtype=torch.long)
        subset = images.subset(idx) if isinstance(images, ImageList) else images[idx].contiguous()
        return Split(subset, labels[idx].clone(), idx)

    train = take(src.train_images, src.train_labels, manifest["splits"]["train"])
    held = {n: take(src.test_images, src.test_labels, manifest["splits"][n]) for n in HELD_OUT}
    mean, std = dataset.normalisation(train.images)
    counts = torch.tensor(manifest["class_counts"])
    groups, shots = run_groups(counts, cfg)
    return LTData(
        dataset=cfg.dataset,
        classes=src.classes,
        class_counts=counts,
        train=train,
        held_out=held,
        mean=mean,
        std=std,
        manifest=manifest,
        sha256=sha,
        groups=groups,
        shots=shots,
        eval_prep=dataset.eval_prep(train.images),
    )
