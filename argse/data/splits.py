"""The split manifest, ``argse.splits/1`` (``outputs/NAME/splits.json``): the seeded long-tailed
training subset and the per-class disjoint val / tune / test splits, with every held-out label.

It is written once per run; its sha256 goes into every logits file, and every reader checks the
files it uses against it, so files of different splits are never mixed silently.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field, model_validator

from argse.core import seeds, storage
from argse.core.errors import ArgseError
from argse.core.records import Count, Record, read_model

if TYPE_CHECKING:
    from argse.config.sections import DataConfig
    from argse.data.datasets import Source

FORMAT = "argse.splits/1"
HELD_OUT = ("val", "tune", "test")
FIX = "delete it to rebuild the splits (the run's logits must then be made again)"


def lt_counts(n_max: int, num_classes: int, imbalance_factor: float) -> list[int]:
    """n_i = floor(n_max * IF^(-i / (C - 1))): the CIFAR-LT profile of Cao et al. (2019)."""
    if num_classes == 1:
        return [n_max]
    return [math.floor(n_max * imbalance_factor ** (-i / (num_classes - 1))) for i in range(num_classes)]


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
        check_held_out(src.classes[c], len(pool), {"val": n_val, "tune": n_tune, "test": n_test}, cfg)
        bounds = {"val": (0, n_val), "tune": (n_val, n_val + n_tune), "test": (n_val + n_tune, n_val + n_tune + n_test)}
        for name, (a, b) in bounds.items():
            splits[name] += pool[a:b].sort().values.tolist()
    check_counts(src.classes, counts, cfg)
    return {
        "format": FORMAT,
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


def check_held_out(name: str, pool: int, sizes: dict[str, int], cfg: DataConfig) -> None:
    """Every class keeps at least one image in each held-out split (an empty split crashes train, gating and
    evaluate, some only after training), so a fraction too small for the official test set is refused here."""
    for split, n in sizes.items():
        if n < 1:
            key = f"data.{split}_fraction"
            raise ArgseError(
                f"{key}={getattr(cfg, f'{split}_fraction'):g} leaves class '{name}' ({pool} official test "
                f"image{'s' if pool != 1 else ''}) with no {split} image; raise {key} so that every class keeps at "
                f"least one (or use a dataset with more test images per class)"
            )


def check_counts(classes: list[str], counts: list[int], cfg: DataConfig) -> None:
    """Every class keeps at least one training image after the long-tailed subsampling, and both the head and
    the tail group (argse.groups, ``data.tail_max_count``) hold classes."""
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise ArgseError(
            f"data.imbalance_factor={cfg.imbalance_factor:g} leaves class '{empty[0]}' "
            f"({len(empty)} class{'es' if len(empty) > 1 else ''} in all) with 0 training images; "
            f"lower the imbalance factor or add training images"
        )
    tail = cfg.tail_max_count
    if min(counts) > tail:
        raise ArgseError(
            f"data.tail_max_count={tail} leaves the tail group empty: the smallest class has {min(counts)} "
            f"training images; set data.tail_max_count to at least {min(counts)}"
        )
    if max(counts) <= tail:
        raise ArgseError(
            f"data.tail_max_count={tail} leaves the head group empty: the largest class has {max(counts)} "
            f"training images; set data.tail_max_count below {max(counts)}"
        )


def manifest_sha256(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_manifest(path: Path, manifest: dict) -> Path:
    return storage.write_json(path, manifest)


class ManifestFile(Record):
    """``splits.json``: classes, training counts, the rows of every split and every held-out label."""

    format: Literal["argse.splits/1"]
    classes: list[str] = Field(min_length=1)
    class_counts: list[Count]
    seed: int
    splits: dict[Literal["train", "val", "tune", "test"], list[Count]]
    # ../shared/runs/ holds a manifest written before labels were stored; its sha256 is in every one of its
    # logits files, so it cannot gain them: without labels, logits are checked to be in class order.
    labels: dict[Literal["val", "tune", "test"], list[Count]] | None = None

    @model_validator(mode="after")
    def _agree(self) -> ManifestFile:
        if len(self.class_counts) != len(self.classes):
            raise ValueError(f"class_counts has {len(self.class_counts)} entries for {len(self.classes)} classes")
        missing = [s for s in ("train", *HELD_OUT) if s not in self.splits]
        if missing:
            raise ValueError(f"splits has no '{missing[0]}'")
        for name, labels in (self.labels or {}).items():
            if len(labels) != len(self.splits[name]):
                raise ValueError(f"labels.{name} has {len(labels)} entries for {len(self.splits[name])} rows")
            if labels and max(labels) >= len(self.classes):
                raise ValueError(f"labels.{name} holds class {max(labels)} of {len(self.classes)}")
        return self


def read_manifest(path: Path) -> dict:
    """A run's split manifest, checked whole (ManifestFile); returned as written, so its sha256 is the one the
    logits files record."""
    if not path.is_file():
        raise ArgseError(f"split manifest {path} does not exist; train the run's experts first (make experts)")
    read_model(path, ManifestFile, "split manifest", FIX)
    return json.loads(path.read_text())


# ---------------------------------------------------------------- the two parts of tune


def tune_parts(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions in ``tune`` that train the gate, and the rest, which fit the rejectors.

    Per class, a seeded ``fraction`` of the samples (rounded; at least one on each side when the
    class has two) goes to the gate, so both parts keep the split's class mix. Every tool that
    reads ``tune`` calls this with the same arguments and gets the same parts.
    """
    g = seeds.generator(seed, "tune_parts")
    in_gate = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique(sorted=True):
        pos = (labels == c).nonzero().flatten()
        pos = pos[torch.randperm(len(pos), generator=g)]
        n = min(max(round(fraction * len(pos)), 1), len(pos) - 1) if len(pos) > 1 else 0
        in_gate[pos[:n]] = True
    return in_gate.nonzero().flatten(), (~in_gate).nonzero().flatten()
