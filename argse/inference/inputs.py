"""The image files predict reads (one image, a folder, a list file with or without labels) and the
rows it writes (CSV or JSON lines), checked before any image is decoded."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from argse.config.sections import RunConfig
from argse.core import storage
from argse.core.errors import ArgseError
from argse.data.decode import image_suffixes, open_rgb
from argse.data.list_files import split_list_line
from argse.data.preprocess import Preprocess, eval_image

IMAGE_SUFFIXES = image_suffixes()


# ---------------------------------------------------------------- image files


@dataclass
class Inputs:
    """The image files of a predict input, with their labels when every line of a list file has one."""

    paths: list[Path]
    labels: list[int] | None = None
    lines: list[int] | None = None  # the list file's line of each path, for messages
    note: str = ""  # why labels that some lines carry are not scored


def read_inputs(target: Path) -> Inputs:
    if not target.exists():
        raise ArgseError(f"{target} does not exist; give an image file, a folder of images or a list file")
    if target.is_dir():
        found = sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ArgseError(
                f"folder {target} holds no images (files ending in a suffix Pillow opens, e.g. .png, .jpg)"
            )
        return Inputs(found)
    if target.suffix.lower() in IMAGE_SUFFIXES:
        return Inputs([target])
    numbered = [
        (i + 1, ln) for i, ln in enumerate(storage.text_lines(storage.read_text(target, "list file"))) if ln.strip()
    ]
    parsed = [split_list_line(ln) for _, ln in numbered]
    if not parsed:
        raise ArgseError(f"list file {target} names no images; give one image path per line")
    paths = [Path(p) if Path(p).is_absolute() else target.parent / p for p, _ in parsed]
    labelled = sum(y is not None for _, y in parsed)
    if labelled == len(parsed):
        return Inputs(paths, [y for _, y in parsed], [n for n, _ in numbered])
    note = f"{labelled} of {len(parsed)} lines of {target} carry a label; none is scored (label every line)"
    return Inputs(paths, note=note if labelled else "")


def check_labels(inputs: Inputs, target: Path, classes: list[str]) -> None:
    for y, line in zip(inputs.labels or [], inputs.lines or [], strict=True):
        if not 0 <= y < len(classes):
            raise ArgseError(f"list file {target}, line {line}: label {y} is not a class of this run "
                             f"(0 to {len(classes) - 1}); fix the label or leave labels out")  # fmt: skip


def decode(path: Path, prep: Preprocess) -> torch.Tensor:
    """uint8 [3, H, W] as the run's evaluation sees it. An image that cannot be used raises ImageError (the
    caller skips it); a size the model cannot take raises ArgseError (every image of the input is the same)."""
    return eval_image(prep, open_rgb(path, f"image {path}"), f"image {path}")


def default_out(cfg: RunConfig, target: Path, fmt: str) -> Path:
    """Beside the run, not in the current folder: outputs/NAME/predictions/<input name>.<format>."""
    return cfg.out_dir / "predictions" / f"{target.resolve().stem or 'input'}.{fmt}"


def labelled_scores(rows: list[dict]) -> dict | None:
    """Accuracy (of every prediction), coverage (accepted share) and selective error (the error among the
    accepted; None when none is) of labelled rows, taken as they are (no re-weighting); None when unlabelled."""
    if not rows or "label" not in rows[0]:
        return None
    accepted = [r for r in rows if r["decision"] == "accepted"]
    wrong = sum(not r["correct"] for r in accepted)
    return {"n": len(rows), "accuracy": sum(r["correct"] for r in rows) / len(rows),
            "coverage": len(accepted) / len(rows), "selective_error": wrong / len(accepted) if accepted else None}  # fmt: skip


def short(value, digits: int):
    """``value`` (a float, or a list / dict of them) to ``digits`` significant digits; 0 keeps full precision."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if digits else value
    if isinstance(value, dict):
        return {k: short(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [short(v, digits) for v in value]
    return value


def write_rows(rows: list[dict], out: Path, fmt: str, experts: list[str] | None, inputs: list[Path] = (),
               top_k: int = 1, digits: int = 4) -> Path:  # fmt: skip
    storage.check_destination(out, list(inputs), example="predictions.csv")  # again: the predictions took a while
    rows = [short(r, digits) for r in rows]
    if fmt == "jsonl":
        return storage.write_text(out, "".join(json.dumps(r) + "\n" for r in rows))
    fields = ["path", "class", "probability", "decision", "score", "threshold"]
    fields += [f"top{k}_{what}" for k in range(1, top_k + 1) for what in ("class", "probability")] if top_k > 1 else []
    fields += ["label", "correct"] if rows and "label" in rows[0] else []
    fields += [f"weight_{e}" for e in experts or []]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        flat = {f"weight_{e}": w for e, w in (r.get("gate_weights") or {}).items()}
        for k, t in enumerate(r.get("top", []), start=1):
            flat |= {f"top{k}_class": t["class"], f"top{k}_probability": t["probability"]}
        writer.writerow(r | flat)
    return storage.write_text(out, buf.getvalue())
