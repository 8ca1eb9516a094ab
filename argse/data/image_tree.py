"""Image trees: ``train/<class>/<image>`` and ``test/<class>/<image>``, a folder or a .tar.gz of one,
decoded once to uint8 tensors and cached as safetensors (the ``imagefolder_lt`` dataset)."""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from pathlib import Path, PurePosixPath

import torch

from argse.core import storage
from argse.core.errors import ArgseError

CACHE_VERSION = 4
"""Of the decoded image-tree cache; raised when what is decoded or stored changes."""
CACHE_FORMAT = "argse.imagecache/1"


def load_image_tree(root: Path, cache_dir: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``{train,test}_{images,labels}`` tensors and the class names of the tree at ``root``, from the cache
    when the tree has not changed since it was decoded."""
    cache = cache_dir / f"imagefolder-{tree_key(root)}.safetensors"
    if cache.is_file():
        return read_cache(cache)
    tensors, classes = _decode(root)
    storage.save_tensors(cache, tensors, {"format": CACHE_FORMAT, "classes": json.dumps(classes), "root": str(root)})
    return tensors, classes


def read_cache(path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The cached tensors and class names, every one checked: a cache that does not hold what it should
    is refused in one sentence rather than trained on."""
    tensors, meta = storage.load_tensors(path, "image cache")
    fix = "delete it and the next run decodes the images again"
    try:
        classes = json.loads(meta.get("classes", ""))
    except json.JSONDecodeError:
        classes = None
    if meta.get("format") != CACHE_FORMAT or not isinstance(classes, list) or not classes:
        raise ArgseError(f"image cache {path} has no {CACHE_FORMAT} format tag or class list; {fix}")
    for part in ("train", "test"):
        images, labels = tensors.get(f"{part}_images"), tensors.get(f"{part}_labels")
        ok = images is not None and labels is not None and images.dtype == torch.uint8 and images.ndim == 4
        ok = ok and labels.dtype == torch.int64 and labels.shape == images.shape[:1] and images.shape[1] == 3
        if not ok or (len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(classes)):
            raise ArgseError(f"image cache {path} does not hold valid {part} images and labels; {fix}")
    return tensors, classes


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
            yield from _archive_entries(root, tar)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArgseError(f"{root} is not a readable .tar.gz image tree ({exc})") from None


def _archive_entries(root: Path, tar: tarfile.TarFile):
    """The entries of an archive exactly as its unpacked folder would give them: links read as their
    target's bytes, and a member stored twice or outside the tree refused (unpacking would overwrite
    the first copy or write outside the folder, so no reading of it is the same as the folder's)."""
    stored: dict[tuple[str, ...], str] = {}
    for member in tar:
        parts = PurePosixPath(member.name).parts
        if _outside(member.name):
            raise ArgseError(f"{root}: member {member.name!r} lies outside the image tree (an absolute or '..' "
                             f"path); repack the archive from inside its folder")  # fmt: skip
        if member.isdir() and len(parts) >= 2 and parts[-2] in ("train", "test"):
            yield parts[-2], parts[-1], None, None
        if not (member.isfile() or member.islnk() or member.issym()) or len(parts) < 3:
            continue
        if parts[-3] not in ("train", "test"):
            continue
        key = parts[-3:]
        if key in stored:
            raise ArgseError(f"{root}: {'/'.join(key)} is stored twice (members {stored[key]!r} and {member.name!r}); "
                             f"repack the archive with one copy")  # fmt: skip
        stored[key] = member.name
        data = _member_bytes(root, tar, member)
        yield parts[-3], parts[-2], parts[-1], lambda data=data: data


def _outside(name: str) -> bool:
    return PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts


def _member_bytes(root: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """A regular member's bytes, or a link's target's; a link out of the tree or to no file is refused."""
    if member.issym() or member.islnk():
        # a symlink is relative to its own folder, a hard link to the archive's root
        target = posixpath.join(posixpath.dirname(member.name), member.linkname) if member.issym() else member.linkname
        if _outside(posixpath.normpath(target)):
            raise ArgseError(f"{root}: link {member.name!r} points to {member.linkname!r}, outside the image tree; "
                             f"repack the archive with the file itself")  # fmt: skip
    try:
        reader = tar.extractfile(member)
    except (KeyError, RecursionError):
        reader = None
    if reader is None:
        raise ArgseError(f"{root}: link {member.name!r} points to {member.linkname!r}, which is not a file in the "
                         f"archive; repack the archive with the file itself")  # fmt: skip
    return reader.read()


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


def _decode(root: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    import numpy as np

    from argse.data.decode import ImageError, open_rgb

    items: dict[str, list[tuple[str, str, torch.Tensor]]] = {"train": [], "test": []}
    folders: dict[str, set[str]] = {"train": set(), "test": set()}
    for part, cls, name, read in _image_entries(root):
        folders[part].add(cls)
        if name is None:
            continue
        try:
            img = torch.from_numpy(np.array(open_rgb(io.BytesIO(read()), f"{root}: {part}/{cls}/{name}")))
        except ImageError as exc:  # a training or test set without this image would be silently different
            raise ArgseError(f"{exc}; replace or remove it") from None
        img = img.permute(2, 0, 1)
        items[part].append((cls, name, img))
    if not items["train"] or not items["test"]:
        raise ArgseError(f"{root} is not an image tree: expected train/<class>/<image> and test/<class>/<image>")
    classes = _check_image_classes(root, items, folders)
    index = {c: i for i, c in enumerate(classes)}
    tensors = {}
    for part in ("train", "test"):
        rows = sorted(items[part], key=lambda r: (index[r[0]], r[1]))
        shapes = {tuple(r[2].shape) for r in rows}
        if len(shapes) != 1:
            raise ArgseError(f"{root}: images of {part}/ differ in size {sorted(shapes)[:2]}; resize them first")
        tensors[f"{part}_images"] = torch.stack([r[2] for r in rows])
        tensors[f"{part}_labels"] = torch.tensor([index[r[0]] for r in rows])
    return tensors, classes


def tree_key(root: Path) -> str:
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
