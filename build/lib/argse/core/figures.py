"""Matplotlib, imported only when a figure is drawn, and a figure written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path

from argse.core import storage


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 100) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return storage.atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
