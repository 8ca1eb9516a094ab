"""Data core: long-tailed training sets, seeded held-out splits, and the split manifest
(the classes' groups are built by argse.groups).

Every dataset (argse.datasets) is reduced to the same thing: an "official" train and test set,
uint8 tensors [N, 3, H, W] or an ImageList. The training set is subsampled per class with the
exponential profile of Cao et al. (2019); the official test set is split per class into val /
tune / test. How an evaluation image is prepared (``eval_image``) is the dataset's to say.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from argse import seeds, storage
from argse.config import DataConfig, RunConfig
from argse.datasets import Images, Source, dataset_for
from argse.errors import ArgseError
from argse.groups import Groups, run_groups
from argse.listfile import ImageList, eval_transform

if TYPE_CHECKING:
    from PIL.Image import Image

    from argse.preprocess import Preprocess

HELD_OUT = ("val", "tune", "test")


def lt_counts(n_max: int, num_classes: int, imbalance_factor: float) -> list[int]:
    """n_i = floor(n_max * IF^(-i / (C - 1))): the CIFAR-LT profile of Cao et al. (2019)."""
    if num_classes == 1:
        return [n_max]
    return [math.floor(n_max * imbalance_factor ** (-i / (num_classes - 1))) for i in range(num_classes)]


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


def load_source(cfg: DataConfig) -> Source:
    """The "official" train and test set of the configured dataset (argse.datasets)."""
    return dataset_for(cfg).load()


# ---------------------------------------------------------------- splits and manifest


def make_manifest(src: Source, cfg: DataConfig, seed: int) -> dict:
    """Seeded long-tailed train subset and per-class disjoint val / tune / test splits."""
    g = seeds.generator(seed, "splits")
    num_classes = len(src.classes)
    have = torch.bincount(src.train_labels, minlength=num_classes)
    counts = have.tolist()
    if not src.long_tailed:  # the profile, capped by what a class has (a folder may hold fewer images)
        profile = lt_counts(int(have.max()), num_classes, cfg.imbalance_factor)
        counts = [min(n, h) for n, h in zip(profile, counts, strict=True)]
    splits: dict[str, list[int]] = {name: [] for name in ("train", *HELD_OUT)}
    for c in range(num_classes):
        pool = torch.nonzero(src.train_labels == c).flatten()
        splits["train"] += pool[torch.randperm(len(pool), generator=g)[: counts[c]]].sort().values.tolist()
        pool = torch.nonzero(src.test_labels == c).flatten()
        pool = pool[torch.randperm(len(pool), generator=g)]
        n_val = round(cfg.val_fraction * len(pool))
        n_tune = round(cfg.tune_fraction * len(pool))
        n_test = min(round(cfg.test_fraction * len(pool)), len(pool) - n_val - n_tune)
        bounds = {"val": (0, n_val), "tune": (n_val, n_val + n_tune), "test": (n_val + n_tune, n_val + n_tune + n_test)}
        for name, (a, b) in bounds.items():
            splits[name] += pool[a:b].sort().values.tolist()
    check_counts(src.classes, counts, cfg)
    return {
        "format": "argse.splits/1",
        "dataset": cfg.dataset,
        "classes": src.classes,
        "seed": seed,
        "imbalance_factor": None if src.long_tailed else cfg.imbalance_factor,
        "fractions": [cfg.val_fraction, cfg.tune_fraction, cfg.test_fraction],
        "class_counts": counts,
        "splits": splits,
        # The label of every held-out sample, so a reader can check a logits file's labels on its own.
        "labels": {name: src.test_labels[splits[name]].tolist() for name in HELD_OUT},
    } | ({"source": src.origin} if src.origin else {})


def check_counts(classes: list[str], counts: list[int], cfg: DataConfig) -> None:
    """Every class keeps at least one training image after the long-tailed subsampling."""
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise ArgseError(
            f"data.imbalance_factor={cfg.imbalance_factor:g} leaves class '{empty[0]}' "
            f"({len(empty)} class{'es' if len(empty) > 1 else ''} in all) with 0 training images; "
            f"lower the imbalance factor or add training images"
        )


def manifest_sha256(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_manifest(path: Path) -> dict:
    """A run's split manifest; a missing, non-UTF-8 or corrupt file is one sentence."""
    if not path.is_file():
        raise ArgseError(f"split manifest {path} does not exist; train the run's experts first (make experts)")
    try:
        manifest = json.loads(storage.read_text(path, "split manifest"))
    except json.JSONDecodeError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise ArgseError(f"split manifest {path} is corrupt; delete it to rebuild the splits")
    return manifest


def prepare_data(run: RunConfig) -> LTData:
    """Load the dataset of a run, build (or re-check) its split manifest, and return its tensors."""
    cfg = run.data
    dataset = dataset_for(cfg)
    src = dataset.load()
    manifest = make_manifest(src, cfg, run.seed)
    path = run.out_dir / "splits.json"
    if path.is_file():
        old = read_manifest(path)
        if "labels" not in old:  # written before manifests held labels: keep it as it is
            manifest.pop("labels")
        sha = manifest_sha256(manifest)
        if manifest_sha256(old) != sha:
            raise ArgseError(
                f"the data or split settings differ from the run's manifest {path}; "
                f"use a new run name (name=...) or delete {run.out_dir} to start over"
            )
    else:
        sha = manifest_sha256(manifest)
        storage.write_json(path, manifest)

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


PREPROCESS_FORMAT = "argse.preprocess/1"


def preprocess_record(data: LTData, cfg: DataConfig | None = None) -> dict:
    """What turns an image file into model input, so prediction needs no training data: class names, the
    normalisation and how the dataset prepares an evaluation image (``cfg`` is not needed: the data knows)."""
    record = {"format": PREPROCESS_FORMAT, "dataset": data.dataset, "classes": data.classes,
              "mean": list(data.mean), "std": list(data.std)}  # fmt: skip
    return record | data.eval_prep


def eval_image(prep: Preprocess, image: Image, what: str = "the image") -> torch.Tensor:
    """uint8 [3, H, W] of a decoded RGB ``image`` as the run's evaluation sees it: resized and centre-cropped
    when ``prep`` (argse.preprocess.Preprocess) gives ``resize`` / ``crop``, otherwise taken as it is at
    ``prep.image_size``; another size is one sentence naming ``what`` (e.g. f"image {path}")."""
    if prep.image_size is None:
        return eval_transform(prep.resize, prep.crop)(image)
    h, w = prep.image_size
    if image.size != (w, h):
        raise ArgseError(f"{what} is {image.size[0]}x{image.size[1]} pixels but the models of this run take "
                         f"{w}x{h}; resize it to {w}x{h} first")  # fmt: skip
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()
