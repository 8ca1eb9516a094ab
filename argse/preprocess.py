"""The preprocess file, ``argse.preprocess/1``: what turns an image file into model input, so
``argse.predict`` needs no training data (class names, normalisation, image size)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from argse import storage
from argse.records import integer, list_of, number, read_record, string

if TYPE_CHECKING:
    from argse.data import LTData

FORMAT = "argse.preprocess/1"
FIX = "rerun python -m argse.train_experts with the same --config and --set (it rewrites the file)"


@dataclass
class Preprocess:
    classes: list[str]
    mean: list[float]
    std: list[float]
    image_size: list[int] | None  # [H, W] the models take as they are; None: resize then centre-crop
    resize: int | None
    crop: int | None


def preprocess_record(data: LTData) -> dict:
    """preprocess.json's content: class names, the normalisation of the training images and how the
    dataset prepares an evaluation image (``Dataset.eval_prep``: image_size, or resize and crop)."""
    record = {"format": FORMAT, "dataset": data.dataset, "classes": data.classes,
              "mean": list(data.mean), "std": list(data.std)}  # fmt: skip
    return record | data.eval_prep


FILE = "preprocess.json"


def write_preprocess(path: Path, data: LTData) -> Path:
    return storage.write_json(path, preprocess_record(data))


def read_preprocess(path: Path) -> Preprocess:
    """preprocess.json with every field checked."""
    rec = read_record(path, FORMAT, "the preprocess file", FIX)
    classes = rec.get("classes", list_of(string(), nonempty=True))
    mean = rec.get("mean", list_of(number(0, 1), 3))
    std = rec.get("std", list_of(number(above=0), 3))
    size = rec.get("image_size", lambda v: v if v is None else list_of(integer(1), 2)(v))
    resize = crop = None
    if size is None:
        resize, crop = rec.get("resize", integer(1)), rec.get("crop", integer(1))
    return Preprocess(classes, mean, std, size, resize, crop)
