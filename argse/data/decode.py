"""Opening an image file as 8-bit RGB, the one way every reader does it (image trees, list files, predict).

The pixel count is read from the header (``PIL.Image.open`` is lazy) and compared to ``MAX_IMAGE_PIXELS``
before anything is decoded, so a decompression bomb (a tiny file declaring a huge image) costs nothing.
High bit-depth images are scaled to 8 bits by their mode's range: 16-bit ("I;16*", and "I" holding
values in 0..65535, as PNG and TIFF decoders give) by 255/65535; float ("F") images are read as [0, 1]
and one with values outside it is refused, since no range can be assumed for it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from argse.core.errors import ArgseError

MAX_IMAGE_PIXELS = 50_000_000
"""The largest width * height decoded (a 7071x7071 image); larger files are refused before decoding."""


class ImageError(ArgseError):
    """One image that cannot be used: the message names it and what is wrong, and the caller adds what
    happens next (predict skips it, a training set stops)."""


def image_suffixes() -> frozenset[str]:
    """The file suffixes of every format this Pillow can open (lower case, with the dot)."""
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def open_rgb(source: str | Path | BinaryIO, what: str) -> Image.Image:
    """The image as a decoded 8-bit RGB ``PIL.Image``; ImageError names ``what`` (e.g. "image a.png")
    for a file that is not an image, too large, damaged or of a range that cannot be mapped to 8 bits."""
    if isinstance(source, str | Path) and Path(source).exists() and not Path(source).is_file():
        raise ImageError(f"{what} is not a regular file (a folder, pipe or device)")  # a pipe would block forever
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit is checked below
            with Image.open(source) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageError(_too_large(what, w, h))
                return to_rgb(im, what)
    except Image.DecompressionBombError:  # Pillow refuses above twice its limit while opening, before our check
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageError(f"{what} declares more than {limit:,} pixels (Pillow's limit, twice PIL.Image.MAX_IMAGE_PIXELS), "
                         f"a likely decompression bomb; shrink it") from None  # fmt: skip
    except FileNotFoundError:
        raise ImageError(f"{what} does not exist") from None
    except UnidentifiedImageError:  # its own text names a BytesIO for archive members: no help
        raise ImageError(f"{what} cannot be decoded (not in an image format Pillow reads)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # SyntaxError: some decoders' choice
        raise ImageError(f"{what} cannot be decoded ({type(exc).__name__}: {exc})") from None


def _too_large(what: str, w: int, h: int) -> str:
    return (f"{what} is {w}x{h} pixels ({w * h:,}), more than the {MAX_IMAGE_PIXELS:,} that argse decodes "
            f"(argse.data.decode.MAX_IMAGE_PIXELS); shrink it")  # fmt: skip


def to_rgb(im: Image.Image, what: str) -> Image.Image:
    """8-bit RGB of a PIL image of any mode, high bit-depth and float modes scaled by their range (PIL's
    own convert clips 16-bit values to 255 and truncates floats, which would be silently wrong)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageError(f"{what} holds 32-bit integer values from {a.min()} to {a.max()}; argse reads "
                             f"integer images of at most 16 bits, save it as 8- or 16-bit")  # fmt: skip
        return _gray(a * (255 / 65535))
    if im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        if a.size and not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            lo, hi = np.nanmin(a), np.nanmax(a)
            raise ImageError(f"{what} holds floating-point values from {lo:g} to {hi:g}; argse reads float "
                             f"images as 0..1, scale it to 0..1 or save it as 8-bit")  # fmt: skip
        return _gray(a * 255)
    return im.convert("RGB")


def _gray(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")
