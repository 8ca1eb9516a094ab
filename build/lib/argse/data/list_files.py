"""``list_lt``: datasets given as list files, as released by Liu et al. (CVPR 2019).

Each line of a list is ``relative/path/to/image.jpg <label>``, the path relative to the data
root: ImageNet_LT_train.txt / _val.txt / _test.txt, iNaturalist18_train.txt / _val.txt.
These images do not fit in device memory, so they are decoded and augmented in DataLoader
worker processes (PIL decoding and torchvision.transforms.v2, as in torchvision's ImageNet
reference; torchvision 0.29 deprecates its own decoders) and only normalised on the device.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from argse.core.errors import ArgseError
from argse.core.storage import read_text
from argse.data.decode import ImageError, open_rgb

if TYPE_CHECKING:  # torchvision is imported only by runs that use list files (it costs memory)
    from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_list(path: Path, root: Path) -> tuple[list[str], list[int]]:
    """Paths and labels of one list file; a malformed line or a missing image names file and line."""
    if not path.is_file():
        raise ArgseError(
            f"list file {path} does not exist; set data.root and the list names in data.list_lt.train_list / test_lists"
        )
    paths, labels = [], []
    for number, line in enumerate(read_text(path, "list file").split("\n"), 1):
        if line.strip():
            rel, label = _parse_line(line.strip(), path, number, root)
            paths.append(rel)
            labels.append(label)
    if not paths:
        raise ArgseError(f"list file {path} has no entries")
    return paths, labels


def split_list_line(line: str) -> tuple[str, int | None]:
    """(path, label) of one list line: the label is the last whitespace-separated field when it is an
    integer, and the path is everything before it, spaces included; without one the whole line is the path."""
    line = line.strip()
    parts = line.rsplit(maxsplit=1)
    if len(parts) == 2 and re.fullmatch(r"-?[0-9]+", parts[1]):
        return parts[0], int(parts[1])
    return line, None


def _parse_line(line: str, path: Path, number: int, root: Path) -> tuple[str, int]:
    rel, label = split_list_line(line)
    if label is None or label < 0:
        raise ArgseError(
            f"{path} line {number}: expected 'relative/path/to/image.jpg <class index>', got {line[:80]!r}"
        )
    if _leaves_root(rel):
        raise ArgseError(
            f"{path} line {number}: image path {rel!r} leaves data.root {root}; "
            f"list paths must be relative paths inside the root"
        )
    if not os.path.isfile(root / rel):
        raise ArgseError(f"{path} line {number}: image {root / rel} does not exist")
    return rel, label


def _leaves_root(rel: str) -> bool:
    """An absolute path, or one whose '..' climbs above the root (checked on the text: symlinks may point anywhere)."""
    return os.path.isabs(rel) or os.path.normpath(rel).split(os.sep)[0] == ".."


def train_transform(size: int) -> v2.Transform:
    """The standard ImageNet training augmentation: random resized crop and horizontal flip."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor()])


def eval_transform(resize: int, size: int) -> v2.Transform:
    """The standard ImageNet evaluation transform: resize the shorter side, then centre crop."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(size), v2.PILToTensor()])


class ImageList(Dataset):
    """Images named by a list file, decoded on access to uint8 [3, H, W] (normalised later, on the device).

    ``transforms`` is (training augmentation, evaluation transform); ``augment`` picks one.
    """

    def __init__(
        self,
        root: Path,
        paths: list[str],
        labels: torch.Tensor,
        transforms: tuple[v2.Transform, v2.Transform],
        augment: bool = False,
    ) -> None:
        self.root, self.paths, self.labels = Path(root), paths, labels
        self.transforms, self.augment = transforms, augment

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.root / self.paths[i]
        try:
            image = open_rgb(path, f"image {path}")
        except ImageError as exc:  # a training or test set without this image would be silently different
            raise ArgseError(f"{exc}; replace or remove it") from None
        return self.transforms[0 if self.augment else 1](image), int(self.labels[i])

    def subset(self, idx: torch.Tensor) -> ImageList:
        paths = [self.paths[i] for i in idx.tolist()]
        return ImageList(self.root, paths, self.labels[idx], self.transforms, self.augment)

    def augmented(self, augment: bool = True) -> ImageList:
        return ImageList(self.root, self.paths, self.labels, self.transforms, augment)
