"""The dataset registry: each dataset is a loader plus its own options, read from ``data.<name>``.

A dataset is a :class:`Dataset` subclass registered with ``@register_dataset("name")`` (plugins too,
by ``plugins:`` in the config or the ``argse.datasets`` entry point). It says what differs: its
``Options`` dataclass (the keys of its config section, e.g. ``data.synthetic_lt: {classes: 10}``),
``load`` (the "official" train and test set), and, when its images are not uint8 tensors in
memory, how they are normalised and how an evaluation image is prepared. Nothing else in argse
names a dataset.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, model_validator

from argse.config.schema import Section, parse
from argse.config.sections import DataConfig
from argse.core.errors import ArgseError
from argse.core.registry import Registry
from argse.core.storage import file_sha256
from argse.data.image_tree import load_image_tree
from argse.data.list_files import IMAGENET_MEAN, IMAGENET_STD, ImageList, eval_transform, read_list, train_transform

Images = torch.Tensor | ImageList
"""uint8 [N, 3, H, W] in memory (moved to the training device), or JPEG files decoded in DataLoader workers."""


@dataclass
class Source:
    """An "official" dataset before any long-tailed subsampling."""

    train_images: Images
    train_labels: torch.Tensor  # int64 [N]
    test_images: Images
    test_labels: torch.Tensor
    classes: list[str]
    long_tailed: bool = False
    """The training set is long-tailed already (list_lt): it is used as it is, not subsampled."""
    origin: dict = field(default_factory=dict)
    """What identifies the files (e.g. list sha256s); recorded in the split manifest."""


class NoOptions(Section):
    """The options of a dataset that has none of its own."""


class Dataset:
    """A registered dataset: ``Options`` (its config section), ``load``, and how its images reach a model.

    The defaults fit datasets whose images are uint8 tensors of one size: normalised by their own
    per-channel statistics, taken as they are at evaluation time.
    """

    name: str = ""  # set by register_dataset
    Options: type = NoOptions
    in_memory: bool = True
    """The images are uint8 tensors that training moves to the device (one copy serves a --team);
    False: a torch Dataset (ImageList) decoded by DataLoader workers."""

    def __init__(self, data: DataConfig, options) -> None:
        self.data, self.options = data, options

    def load(self) -> Source:
        raise NotImplementedError

    def normalisation(self, train: Images) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std (0-1 scale) that the models' inputs are normalised with."""
        pixels = train.float().div_(255)
        return tuple(pixels.mean(dim=(0, 2, 3)).tolist()), tuple(pixels.std(dim=(0, 2, 3)).tolist())

    def eval_prep(self, train: Images) -> dict:
        """How an image file becomes model input (``argse.preprocess/1``): here, taken as it is at the training
        size; ``resize`` / ``crop`` (shorter side, then centre crop) with ``image_size`` None otherwise."""
        return {"image_size": list(train.shape[2:]), "resize": None, "crop": None}


DATASETS: Registry[type[Dataset]] = Registry("dataset", "argse.datasets")

register_dataset = DATASETS.register
"""Class decorator: add a :class:`Dataset` under ``name``; the class is returned unchanged (``name`` set)."""
get_dataset = DATASETS.get
list_datasets = DATASETS.names


def dataset_for(cfg: DataConfig) -> Dataset:
    """The configured dataset with its options; every section under ``data`` is checked, so a typo is an error."""
    options = {}
    for key, section in cfg.sections.items():
        if key not in DATASETS:
            close = difflib.get_close_matches(key, list_datasets(), n=1)
            hint = f" (did you mean 'data.{close[0]}'?)" if close else ""
            raise ArgseError(
                f"unknown config section 'data.{key}'{hint}; a section under data holds one dataset's options, "
                f"registered datasets: {', '.join(list_datasets())}"
            )
        options[key] = parse(get_dataset(key).Options, section, f"data.{key}")
    cls = get_dataset(cfg.dataset)
    return cls(cfg, options.get(cfg.dataset) or parse(cls.Options, {}, f"data.{cfg.dataset}"))


# ---------------------------------------------------------------- the built-in datasets


class SyntheticOptions(Section):
    classes: int = Field(10, ge=1)
    max_per_class: int = Field(300, ge=1)
    """Training images of each class before the long-tailed subsampling."""
    test_per_class: int = Field(100, ge=1)
    """Official test images of each class (split into val / tune / test)."""
    image_size: int = Field(32, ge=1)
    signal: float = Field(60.0, gt=0)
    """How far each class's colour pattern departs from mid-grey (grey levels, before clipping to 0-255)."""
    noise: float = Field(100.0, ge=0)
    """Standard deviation of the per-pixel Gaussian noise (grey levels): with ``signal``, how hard the classes are."""


@register_dataset("synthetic_lt")
class SyntheticLT(Dataset):
    """Learnable long-tail-ready images: a smooth colour pattern per class plus noise.

    Generated from a fixed seed, so it plays the role of a fixed "official" dataset.
    """

    Options = SyntheticOptions

    def load(self) -> Source:
        g = torch.Generator().manual_seed(1234)
        c, s = self.options.classes, self.options.image_size
        protos = torch.randn(c, 3, 4, 4, generator=g)
        protos = torch.nn.functional.interpolate(protos, size=(s, s), mode="bilinear", align_corners=False)

        def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
            labels = torch.arange(c).repeat_interleave(per_class)
            noise = torch.randn(len(labels), 3, s, s, generator=g)
            x = 128 + self.options.signal * protos[labels] + self.options.noise * noise
            return x.clamp(0, 255).round().to(torch.uint8), labels

        train_x, train_y = draw(self.options.max_per_class)
        test_x, test_y = draw(self.options.test_per_class)
        return Source(train_x, train_y, test_x, test_y, [f"class_{i}" for i in range(c)])


class CifarOptions(Section):
    download: bool = True
    """Let torchvision download CIFAR when the files are missing and the network allows."""


# CIFAR-10 also comes as an image tree of JPEG files (train/<class>/, test/<class>/, as a .tar.gz), read by imagefolder_lt.
JPEG_ARCHIVE = (
    ", or read CIFAR-10 from a JPEG image tree or its .tar.gz: --set data.dataset=imagefolder_lt "
    "--set data.root=path/to/cifar10-jpeg.tar.gz"
)


class _Cifar(Dataset):
    """CIFAR-10 / CIFAR-100 from the torchvision layout under data.root."""

    Options = CifarOptions
    num_classes = 10

    def load(self) -> Source:
        from torchvision import datasets

        n, root = self.num_classes, self.data.root
        cls = datasets.CIFAR10 if n == 10 else datasets.CIFAR100
        folder = "cifar-10-batches-py" if n == 10 else "cifar-100-python"
        try:
            sets = [cls(root, train=t, download=self.options.download) for t in (True, False)]
        except (RuntimeError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ArgseError(
                f"CIFAR-{n} was not found under '{root}' and could not be downloaded "
                f"({reason}); put the extracted '{folder}/' folder of the python version there "
                f"(or set data.root=...){JPEG_ARCHIVE if n == 10 else ''}"
            ) from None

        def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)

        (tx, ty), (vx, vy) = tensors(sets[0]), tensors(sets[1])
        return Source(tx, ty, vx, vy, list(sets[0].classes))


@register_dataset("cifar10_lt")
class Cifar10LT(_Cifar):
    """CIFAR-10, long-tailed by the profile of Cao et al. (2019)."""

    num_classes = 10


@register_dataset("cifar100_lt")
class Cifar100LT(_Cifar):
    """CIFAR-100, long-tailed by the profile of Cao et al. (2019)."""

    num_classes = 100


def user_cache() -> Path:
    """This user's cache folder for argse, as other tools keep theirs: $XDG_CACHE_HOME/argse, else ~/.cache/argse."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "argse"


class ImageFolderOptions(Section):
    cache_dir: str = ""
    """Decoded images are cached here as uint8 safetensors; empty: this user's cache folder (``user_cache``), the
    same from every folder a command runs in."""


@register_dataset("imagefolder_lt")
class ImageFolderLT(Dataset):
    """Any train/<class>/* and test/<class>/* tree of images of one size, or a .tar.gz of one."""

    Options = ImageFolderOptions

    def load(self) -> Source:
        root = Path(self.data.root)
        if not root.exists():
            raise ArgseError(
                f"imagefolder_lt root '{root}' does not exist; set data.root to a train/ + test/ image tree "
                f"or its .tar.gz (e.g. --set data.root=path/to/cifar10-jpeg.tar.gz)"
            )
        t, classes = load_image_tree(root, Path(self.options.cache_dir) if self.options.cache_dir else user_cache())
        return Source(t["train_images"], t["train_labels"], t["test_images"], t["test_labels"], classes)


class ListOptions(Section):
    train_list: str = ""
    """The long-tailed training list under data.root, e.g. ImageNet_LT_train.txt (used as it is: no further
    subsampling)."""
    test_lists: list[str] = []
    """Lists pooled into the official test set that val / tune / test are split from."""
    image_size: int = 224
    """Training crop (RandomResizedCrop) and evaluation centre crop."""
    resize: int = 256
    """Evaluation images are resized to this shorter side before the centre crop."""

    @model_validator(mode="after")
    def _check(self) -> Any:
        if not (self.train_list and self.test_lists):
            raise ValueError("list_lt needs train_list and test_lists (list files under data.root)")
        if self.image_size < 1 or self.resize < self.image_size:
            raise ValueError(
                f"image_size must be >= 1 and resize >= image_size (the centre crop is taken from the resized "
                f"image), got image_size {self.image_size}, resize {self.resize}"
            )
        return self


@register_dataset("list_lt")
class ListLT(Dataset):
    """Liu et al. (2019) list files ("relative/path.jpg label" per line, paths under data.root), decoded by
    DataLoader workers: ImageNet-LT, iNaturalist 2018."""

    Options = ListOptions
    in_memory = False

    def load(self) -> Source:
        root, opt = Path(self.data.root), self.options
        if not root.is_dir():
            raise ArgseError(
                f"list_lt image root '{root}' is not a directory; set data.root to the folder the lists refer to"
            )
        transforms = (train_transform(opt.image_size), eval_transform(opt.resize, opt.image_size))
        parts = []
        for names in ([opt.train_list], opt.test_lists):
            paths, labels = [], []
            for name in names:
                p, y = read_list(root / name, root)
                paths += p
                labels += y
            parts.append(ImageList(root, paths, torch.tensor(labels), transforms))
        train, test = parts
        num_classes = int(max(train.labels.max(), test.labels.max())) + 1
        missing = sorted(set(range(num_classes)) - set(train.labels.tolist()))
        if missing:
            raise ArgseError(f"{opt.train_list} has no image of class {missing[0]}; every class needs training images")
        origin = {name: file_sha256(root / name) for name in [opt.train_list, *opt.test_lists]}
        classes = [str(c) for c in range(num_classes)]
        return Source(train, train.labels, test, test.labels, classes, long_tailed=True, origin=origin)

    def normalisation(self, train: Images) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return IMAGENET_MEAN, IMAGENET_STD  # the images are decoded in workers, never all at once

    def eval_prep(self, train: Images) -> dict:
        return {"image_size": None, "resize": self.options.resize, "crop": self.options.image_size}
