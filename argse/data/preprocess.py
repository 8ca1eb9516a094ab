"""The preprocess file, ``argse.preprocess/1``: what turns an image file into model input, so
``argse.predict`` needs no training data (class names, normalisation, image size)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import torch
from PIL.Image import Image
from pydantic import Field, model_validator

from argse.core import storage
from argse.core.errors import ArgseError
from argse.core.records import Probability, Record, read_model
from argse.data.list_files import eval_transform

if TYPE_CHECKING:
    from argse.data.long_tail import LTData

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


def eval_image(prep: Preprocess, image: Image, what: str = "the image") -> torch.Tensor:
    """uint8 [3, H, W] of a decoded RGB ``image`` as the run's evaluation sees it: resized and centre-cropped
    when ``prep`` (argse.data.preprocess.Preprocess) gives ``resize`` / ``crop``, otherwise taken as it is at
    ``prep.image_size``; another size is one sentence naming ``what`` (e.g. f"image {path}")."""
    if image.mode != "RGB":  # a grey, 16-bit or float image would give other channels or a wrong range
        from argse.data.decode import to_rgb  # here: this edit stays inside eval_image

        image = to_rgb(image, what)
    if prep.image_size is None:
        return eval_transform(prep.resize, prep.crop)(image)
    h, w = prep.image_size
    if image.size != (w, h):
        raise ArgseError(f"{what} is {image.size[0]}x{image.size[1]} pixels but the models of this run take "
                         f"{w}x{h}; resize it to {w}x{h} first")  # fmt: skip
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()
