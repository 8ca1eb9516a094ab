"""The preprocess file, ``argse.preprocess/1``: what turns an image file into model input, so
``argse.predict`` needs no training data (class names, normalisation, image size)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from argse import storage
from argse.records import Probability, Record, read_model

if TYPE_CHECKING:
    from argse.data import LTData

FORMAT = "argse.preprocess/1"
FIX = "rerun python -m argse.train_experts with the same --config and --set (it rewrites the file)"


Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Pixels = Annotated[int, Field(ge=1, strict=True)]


class Preprocess(Record):
    """preprocess.json: class names, normalisation, and the images the models take."""

    format: Literal["argse.preprocess/1"]
    classes: list[str] = Field(min_length=1)
    mean: list[Probability] = Field(min_length=3, max_length=3)
    std: list[Positive] = Field(min_length=3, max_length=3)
    image_size: list[Pixels] | None = Field(default=None, min_length=2, max_length=2)
    """[H, W] the models take as they are; None: resize, then a centre crop."""
    resize: Pixels | None = None
    crop: Pixels | None = None

    @model_validator(mode="after")
    def _size(self) -> Preprocess:
        if self.image_size is None and (self.resize is None or self.crop is None):
            raise ValueError("without image_size, resize and crop must both be given")
        return self


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
    """preprocess.json, every field checked (Preprocess)."""
    return read_model(path, Preprocess, "the preprocess file", FIX)
