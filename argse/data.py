"""Data core: long-tailed training sets, seeded held-out splits, and the split manifest
(the classes' groups are built by argse.groups).

Every dataset is reduced to the same thing: an "official" train and test set as uint8
tensors [N, 3, H, W]. The training set is subsampled per class with the exponential profile
of Cao et al. (2019); the official test set is split per class into val / tune / test.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from argse import seeds, storage
from argse.config import DataConfig, RunConfig, read_text
from argse.errors import ArgseError
from argse.groups import Groups, run_groups
from argse.listfile import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageList,
    eval_transform,
    file_sha256,
    read_list,
    train_transform,
)

HELD_OUT = ("val", "tune", "test")
CACHE_VERSION = 2
"""Of the decoded image-tree cache; raised when what is decoded changes."""

Images = torch.Tensor | ImageList
"""uint8 [N, 3, H, W] in memory (moved to the training device), or JPEG files decoded in DataLoader workers."""


def lt_counts(n_max: int, num_classes: int, imbalance_factor: float) -> list[int]:
    """n_i = floor(n_max * IF^(-i / (C - 1))): the CIFAR-LT profile of Cao et al. (2019)."""
    if num_classes == 1:
        return [n_max]
    return [math.floor(n_max * imbalance_factor ** (-i / (num_classes - 1))) for i in range(num_classes)]


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

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------- sources


def _synthetic(cfg: DataConfig) -> Source:
    """Learnable long-tail-ready images: a smooth colour pattern per class plus noise.

    Generated from a fixed seed, so it plays the role of a fixed "official" dataset.
    """
    g = torch.Generator().manual_seed(1234)
    c, s = cfg.synthetic_classes, cfg.synthetic_image_size
    protos = torch.randn(c, 3, 4, 4, generator=g)
    protos = torch.nn.functional.interpolate(protos, size=(s, s), mode="bilinear", align_corners=False)

    def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(c).repeat_interleave(per_class)
        noise = torch.randn(len(labels), 3, s, s, generator=g)
        x = 128 + 60 * protos[labels] + 100 * noise
        return x.clamp(0, 255).round().to(torch.uint8), labels

    train_x, train_y = draw(cfg.synthetic_max_per_class)
    test_x, test_y = draw(cfg.synthetic_test_per_class)
    return Source(train_x, train_y, test_x, test_y, [f"class_{i}" for i in range(c)])


def _cifar(cfg: DataConfig, num_classes: int) -> Source:
    from torchvision import datasets

    cls = datasets.CIFAR10 if num_classes == 10 else datasets.CIFAR100
    folder = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
    try:
        sets = [cls(cfg.root, train=t, download=cfg.download) for t in (True, False)]
    except (RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArgseError(
            f"CIFAR-{num_classes} was not found under '{cfg.root}' and could not be downloaded "
            f"({reason}); put the extracted '{folder}/' folder of the python version there "
            f"(or set data.root=...)"
        ) from None

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)

    (tx, ty), (vx, vy) = tensors(sets[0]), tensors(sets[1])
    return Source(tx, ty, vx, vy, list(sets[0].classes))


def _image_entries(root: Path):
    """Yield (part, class, name, bytes-reader) for train/<class>/<img> and test/<class>/<img>.

    A class folder without images is yielded once as (part, class, None, None).
    """
    if root.is_dir():
        for folder in sorted(root.glob("*/*")):
            part = folder.parent.name
            if part not in ("train", "test") or not folder.is_dir():
                continue
            files = sorted(p for p in folder.iterdir() if p.is_file())
            yield from ((part, folder.name, p.name, p.read_bytes) for p in files)
            if not files:
                yield part, folder.name, None, None
        return
    try:
        with tarfile.open(root, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isdir() and len(parts) >= 2 and parts[-2] in ("train", "test"):
                    yield parts[-2], parts[-1], None, None
                if not member.isfile() or len(parts) < 3 or parts[-3] not in ("train", "test"):
                    continue
                data = tar.extractfile(member).read()
                yield parts[-3], parts[-2], parts[-1], lambda data=data: data
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArgseError(f"{root} is not a readable .tar.gz image tree ({exc})") from None


def _check_image_classes(root: Path, items: dict[str, list], folders: dict[str, set[str]]) -> list[str]:
    """The classes of an image tree: every class folder must hold train and test images."""
    have = {part: {c for c, _, _ in rows} for part, rows in items.items()}
    for part in ("train", "test"):
        empty = sorted(folders[part] - have[part])
        if empty:
            raise ArgseError(f"{root}: class folder {part}/{empty[0]} holds no images; add images or remove it")
    for part, other in (("test", "train"), ("train", "test")):
        alone = sorted(have[part] - have[other])
        if alone:
            raise ArgseError(
                f"{root}: class '{alone[0]}' has {part} images but no {other}/{alone[0]} folder; "
                f"every class needs both train and test images"
            )
    return sorted(have["train"])


def _decode_image_tree(root: Path) -> Source:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    items: dict[str, list[tuple[str, str, torch.Tensor]]] = {"train": [], "test": []}
    folders: dict[str, set[str]] = {"train": set(), "test": set()}
    for part, cls, name, read in _image_entries(root):
        folders[part].add(cls)
        if name is None:
            continue
        try:
            with Image.open(io.BytesIO(read())) as im:
                img = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
        except (UnidentifiedImageError, OSError):
            raise ArgseError(f"{root}: {part}/{cls}/{name} is not a decodable image") from None
        items[part].append((cls, name, img))
    if not items["train"] or not items["test"]:
        raise ArgseError(f"{root} is not an image tree: expected train/<class>/<image> and test/<class>/<image>")
    classes = _check_image_classes(root, items, folders)
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for part in ("train", "test"):
        rows = sorted(items[part], key=lambda r: (index[r[0]], r[1]))
        shapes = {tuple(r[2].shape) for r in rows}
        if len(shapes) != 1:
            raise ArgseError(f"{root}: images of {part}/ differ in size {sorted(shapes)[:2]}; resize them first")
        out += [torch.stack([r[2] for r in rows]), torch.tensor([index[r[0]] for r in rows])]
    return Source(*out, classes)


def _tree_key(root: Path) -> str:
    """What the decoded cache depends on: path, size and mtime of every file (of the archive itself).

    A folder's own mtime does not change when a file inside one of its class folders does, so a
    folder is keyed on all of its files (one stat each); an archive changes as a whole.
    """
    digest = hashlib.sha256(f"{CACHE_VERSION}|{root.resolve()}".encode())
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for path in files:
        st = path.stat()
        digest.update(f"|{path.relative_to(root) if root.is_dir() else ''}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _imagefolder(cfg: DataConfig) -> Source:
    root = Path(cfg.root)
    if not root.exists():
        raise ArgseError(
            f"imagefolder_lt root '{root}' does not exist; set data.root to a train/ + test/ image tree "
            f"or its .tar.gz (e.g. ../shared/datasets/cifar10-jpeg.tar.gz)"
        )
    cache = Path(cfg.cache_dir) / f"imagefolder-{_tree_key(root)}.safetensors"
    if cache.is_file():
        t, meta = storage.load_tensors(cache, "image cache")
        return Source(
            t["train_images"], t["train_labels"], t["test_images"], t["test_labels"], json.loads(meta["classes"])
        )
    src = _decode_image_tree(root)
    tensors = {
        "train_images": src.train_images,
        "train_labels": src.train_labels,
        "test_images": src.test_images,
        "test_labels": src.test_labels,
    }
    storage.save_tensors(cache, tensors, {"classes": json.dumps(src.classes), "root": str(root)})
    return src


def _list_lt(cfg: DataConfig) -> Source:
    root = Path(cfg.root)
    if not root.is_dir():
        raise ArgseError(
            f"list_lt image root '{root}' is not a directory; set data.root to the folder the lists refer to"
        )
    transforms = (train_transform(cfg.image_size), eval_transform(cfg.resize, cfg.image_size))
    lists = [cfg.train_list, *cfg.test_lists]
    parts = []
    for names in ([cfg.train_list], cfg.test_lists):
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
        raise ArgseError(f"{cfg.train_list} has no image of class {missing[0]}; every class needs training images")
    return Source(
        train,
        train.labels,
        test,
        test.labels,
        [str(c) for c in range(num_classes)],
        long_tailed=True,
        origin={name: file_sha256(root / name) for name in lists},
    )


def load_source(cfg: DataConfig) -> Source:
    if cfg.dataset == "list_lt":
        return _list_lt(cfg)
    if cfg.dataset == "synthetic_lt":
        return _synthetic(cfg)
    if cfg.dataset in ("cifar10_lt", "cifar100_lt"):
        return _cifar(cfg, 10 if cfg.dataset == "cifar10_lt" else 100)
    return _imagefolder(cfg)


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
        manifest = json.loads(read_text(path, "split manifest"))
    except json.JSONDecodeError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise ArgseError(f"split manifest {path} is corrupt; delete it to rebuild the splits")
    return manifest


def prepare_data(run: RunConfig) -> LTData:
    """Load the dataset of a run, build (or re-check) its split manifest, and return its tensors."""
    cfg = run.data
    src = load_source(cfg)
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
    if isinstance(train.images, ImageList):
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        pixels = train.images.float().div_(255)
        mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
        std = tuple(pixels.std(dim=(0, 2, 3)).tolist())
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
    )


PREPROCESS_FORMAT = "argse.preprocess/1"


def preprocess_record(data: LTData, cfg: DataConfig) -> dict:
    """What turns an image file into model input, so prediction needs no training data:
    class names, the normalisation (computed from the training images) and the image size."""
    images = data.train.images
    record = {"format": PREPROCESS_FORMAT, "dataset": data.dataset, "classes": data.classes,
              "mean": list(data.mean), "std": list(data.std)}  # fmt: skip
    if isinstance(images, ImageList):  # list_lt resizes and centre-crops any image
        return record | {"image_size": None, "resize": cfg.resize, "crop": cfg.image_size}
    return record | {"image_size": list(images.shape[2:]), "resize": None, "crop": None}
