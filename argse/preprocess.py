"""The preprocess file, ``argse.preprocess/1``: what turns an image file into model input, so
``argse.predict`` needs no training data (class names, normalisation, image size)."""

from __future__ import annotations

from dataclasses import dataclass

from argse.paths import RunPaths
from argse.records import integer, list_of, number, read_record, string

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

    def as_record(self) -> dict:
        return {"classes": self.classes, "mean": self.mean, "std": self.std, "image_size": self.image_size,
                "resize": self.resize, "crop": self.crop}  # fmt: skip


def read_preprocess(paths: RunPaths) -> Preprocess:
    """preprocess.json with every field checked."""
    rec = read_record(paths.preprocess, FORMAT, "the preprocess file", FIX)
    classes = rec.get("classes", list_of(string(), nonempty=True))
    mean = rec.get("mean", list_of(number(0, 1), 3))
    std = rec.get("std", list_of(number(above=0), 3))
    size = rec.get("image_size", lambda v: v if v is None else list_of(integer(1), 2)(v))
    resize = crop = None
    if size is None:
        resize, crop = rec.get("resize", integer(1)), rec.get("crop", integer(1))
    return Preprocess(classes, mean, std, size, resize, crop)
