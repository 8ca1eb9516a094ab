"""The ``argse.logits/1`` file format: write, read and validate expert logits (docs/logits_format.md)."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, Json, ValidationError, field_validator, model_validator

from argse import __version__
from argse.core import storage
from argse.core.errors import ArgseError
from argse.core.records import Count, problem
from argse.data.splits import HELD_OUT, manifest_sha256, read_manifest

# The range argse fits a temperature in (argse.experts.calibration), so the range a logits file may state.
T_MIN, T_MAX = 0.05, 20.0

FORMAT = "argse.logits/1"
META_KEYS = (
    "format",
    "expert",
    "dataset",
    "split",
    "num_classes",
    "temperature",
    "class_counts",
    "splits_sha256",
    "config",
    "argse_version",
)


@dataclass
class LogitsFile:
    path: Path
    logits: torch.Tensor  # float32 [N, C], raw; a meta tensor (no data) when read with rows_on_disk
    labels: torch.Tensor  # int64 [N]
    indices: torch.Tensor  # int64 [N]
    expert: str
    dataset: str
    split: str
    num_classes: int
    temperature: float
    class_counts: list[int]
    splits_sha256: str
    config: dict

    @property
    def calibrated(self) -> torch.Tensor:
        return self.logits / self.temperature

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.calibrated.double(), dim=1)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Raw logits of samples ``start:stop``; read from the file, and checked finite, when the file was read
        with ``rows_on_disk``."""
        if not self.logits.is_meta:
            return self.logits[start:stop]
        block = storage.read_rows(self.path, "logits file", "logits", start, stop)
        expected = (len(range(len(self.labels))[start:stop]), self.num_classes)
        if block.dtype != torch.float32 or tuple(block.shape) != expected:  # replaced since it was checked
            raise field_error(self.path, "logits", "changed on disk while it was read")
        if not torch.isfinite(block).all():
            raise field_error(self.path, "logits", "contains NaN or infinite values")
        return block

    def log_probs(self, start: int, stop: int) -> torch.Tensor:
        """Calibrated log-probabilities (float64) of samples ``start:stop``, as ``log_softmax(calibrated)``."""
        return F.log_softmax((self.rows(start, stop) / self.temperature).double(), dim=1)


def log_prob_blocks(files: list[LogitsFile], rows: int) -> Iterator[tuple[slice, torch.Tensor]]:
    """The calibrated log-probabilities [E, rows, C] of one split's ``files`` (one per expert), a block of
    samples at a time, so that [E, N, C] is never held; yields (the block's samples, the block)."""
    n = len(files[0].labels)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        yield slice(start, stop), torch.stack([f.log_probs(start, stop) for f in files])


def field_error(path: Path, field: str, why: str) -> ArgseError:
    return ArgseError(f"logits file {path}: field '{field}' {why}; re-export it with train_experts")


def split_file(folder: Path, split: str) -> Path:
    """A source's logits of one split inside its folder (its stage, or the run's readable logits/<source>)."""
    return Path(folder) / f"{split}.safetensors"


def write_logits(
    path: Path,
    logits: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
    *,
    expert: str,
    dataset: str,
    split: str,
    temperature: float,
    class_counts: list[int],
    splits_sha256: str,
    config: dict,
) -> Path:
    if not torch.isfinite(logits).all():
        raise ArgseError(
            f"{expert} gives NaN or infinite logits on {split}, so {path} was not written; "
            f"training diverged: lower the learning rate and retrain"
        )
    meta = {
        "format": FORMAT,
        "expert": expert,
        "dataset": dataset,
        "split": split,
        "num_classes": str(logits.shape[1]),
        "temperature": repr(float(temperature)),
        "class_counts": json.dumps([int(c) for c in class_counts]),
        "splits_sha256": splits_sha256,
        "config": json.dumps(config, sort_keys=True),
        "argse_version": __version__,
    }
    tensors = {"logits": logits.float(), "labels": labels.long(), "indices": indices.long()}
    return storage.save_tensors(path, tensors, meta)


def read_logits(path: str | Path, *, rows_on_disk: bool = False) -> LogitsFile:
    """Read one file and validate format, metadata, dtypes, shapes and finiteness.

    ``rows_on_disk``: every check but finiteness now, and the logits left in the file (``logits`` is a meta
    tensor); :meth:`LogitsFile.rows` reads a block of them and checks it finite, with the same sentence.
    """
    path = Path(path)
    if rows_on_disk:
        tensors, meta = storage.open_tensors(path, "logits file", ("logits",))
    else:
        tensors, meta = storage.load_tensors(path, "logits file")

    def bad(field: str, why: str) -> ArgseError:
        return field_error(path, field, why)

    if meta.get("format") != FORMAT:
        raise bad("format", f"is {meta.get('format')!r}, expected {FORMAT!r}")
    for key in META_KEYS:
        if key not in meta:
            raise bad(key, "is missing")
    expected = {"logits": (torch.float32, 2), "labels": (torch.int64, 1), "indices": (torch.int64, 1)}
    for name, (dtype, ndim) in expected.items():
        if name not in tensors:
            raise bad(name, "is missing")
        t = tensors[name]
        if t.dtype != dtype:
            raise bad(name, f"has dtype {t.dtype}, expected {dtype}")
        if t.ndim != ndim:
            raise bad(name, f"has shape {tuple(t.shape)}, expected {ndim} dimensions")
    logits, labels, indices = tensors["logits"], tensors["labels"], tensors["indices"]
    parsed = _metadata(meta, path)
    num_classes, temperature, class_counts, config = (
        parsed.num_classes, parsed.temperature, parsed.class_counts, parsed.config,
    )  # fmt: skip
    if logits.shape != (len(labels), num_classes) or len(indices) != len(labels):
        raise bad("logits", f"has shape {tuple(logits.shape)}, expected ({len(labels)}, {num_classes})")
    if not logits.is_meta and not torch.isfinite(logits).all():
        raise bad("logits", "contains NaN or infinite values")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise bad("labels", f"has values outside [0, {num_classes})")
    return LogitsFile(
        path,
        logits,
        labels,
        indices,
        meta["expert"],
        meta["dataset"],
        meta["split"],
        num_classes,
        temperature,
        class_counts,
        meta["splits_sha256"],
        config,
    )


class Metadata(BaseModel):
    """The metadata fields of a logits file that hold numbers or JSON, parsed from their strings and checked."""

    num_classes: int = Field(ge=1)
    temperature: float = Field(allow_inf_nan=False)
    class_counts: Json[list[Count]]
    config: Json[dict]

    @field_validator("temperature")
    @classmethod
    def _searched(cls, t: float) -> float:
        # the range fit_temperature searches (with room for rounding); a value outside it was not written by argse
        if not T_MIN * (1 - 1e-9) <= t <= T_MAX * (1 + 1e-9):
            raise ValueError(f"must be in [{T_MIN:g}, {T_MAX:g}], the range argse fits it in")
        return t

    @model_validator(mode="after")
    def _counts(self) -> Metadata:
        if len(self.class_counts) != self.num_classes:
            raise ValueError(f"class_counts has {len(self.class_counts)} entries, expected {self.num_classes}")
        return self


def _metadata(meta: dict[str, str], path: Path) -> Metadata:
    try:
        return Metadata.model_validate({k: meta[k] for k in Metadata.model_fields})
    except ValidationError as exc:
        raise ArgseError(f"logits file {path}: {problem(exc)}; re-export it with train_experts") from None


def read_logit_set(paths: list[str | Path]) -> list[LogitsFile]:
    """Read several files of one split and check they describe the same samples."""
    files = [read_logits(p) for p in paths]
    for f in files[1:]:
        check_same_samples(f, files[0])
    return files


def check_same_samples(f: LogitsFile, ref: LogitsFile) -> None:
    """Refuse ``f`` unless it holds the same split, samples and training counts as ``ref``."""
    for field in ("splits_sha256", "num_classes", "split", "class_counts", "labels", "indices"):
        a, b = getattr(f, field), getattr(ref, field)
        if not (torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b):
            raise ArgseError(
                f"logits file {f.path}: field '{field}' differs from {ref.path}; "
                f"export every expert from the same run and splits"
            )


def check_against_run(f: LogitsFile, split: str, manifest: dict, sha: str, manifest_path: Path) -> None:
    """One file against its run's split manifest: a lone source cannot be another split's or run's."""
    rows, labels = manifest["splits"][split], manifest.get("labels", {}).get(split)
    checks = [
        ("splits_sha256", f.splits_sha256 == sha, f"{f.splits_sha256[:12]}... instead of {sha[:12]}..."),
        ("split", f.split == split, f"{f.split!r} instead of {split!r}"),
        ("dataset", f.dataset == manifest.get("dataset"), f"{f.dataset!r} instead of {manifest.get('dataset')!r}"),
        ("class_counts", f.class_counts == manifest.get("class_counts"), "other training counts"),
        ("indices", f.indices.tolist() == rows, "rows missing, added or reordered"),
    ]
    if labels is not None:
        checks.append(("labels", f.labels.tolist() == labels, "a sample's label differs"))
    else:  # a manifest without labels (manifest.py): held-out rows come class by class
        checks.append(("labels", bool((f.labels[1:] >= f.labels[:-1]).all()), "is not in class order"))
    for field, ok, detail in checks:
        if not ok:
            raise ArgseError(
                f"logits file {f.path}: field '{field}' does not match the run's split manifest "
                f"{manifest_path} ({detail}); re-export it from this run with train_experts"
            )


SPLIT_FILES = [f"{split}.safetensors" for split in HELD_OUT]


def load_sources(folders: dict[str, Path], splits: list[str], manifest_path: Path) -> dict[str, list[LogitsFile]]:
    """Load and validate the logits of each source (``folders``: source -> its folder) for each split:
    {split: [file per source]}. The files of one split must agree with each other and with the split manifest."""
    reader = SourceReader(folders, splits, manifest_path)
    return {split: [reader.read(source, split) for source in folders] for split in splits}


class SourceReader:
    """Sources' logits read one (source, split) at a time, with every check of :func:`load_sources`, so a
    caller can hold one file at a time (8,142 classes: 0.8 GB per split and source) and read from threads."""

    def __init__(self, folders: dict[str, Path], splits: list[str], manifest_path: Path):
        self.folders = {s: Path(f) for s, f in folders.items()}
        self.manifest_path = Path(manifest_path)
        self.manifest = read_manifest(self.manifest_path)
        self.sha = manifest_sha256(self.manifest)
        for split in splits:  # every file is there before any is read
            for source, folder in self.folders.items():
                p = split_file(folder, split)
                if not p.is_file():
                    raise ArgseError(
                        f"no {split} logits for '{source}' at {p}; train and export it first "
                        f"(make experts EXPERTS={source}, or make gating for 'gating')"
                    )
        self._first: dict[str, LogitsFile] = {}  # per split, the first file read, without its logits
        self._lock = threading.Lock()

    @property
    def sources(self) -> list[str]:
        return list(self.folders)

    def read(self, source: str, split: str, rows_on_disk: bool = False) -> LogitsFile:
        """One file, checked against its team and the run; ``rows_on_disk`` as :func:`read_logits`."""
        f = read_logits(split_file(self.folders[source], split), rows_on_disk=rows_on_disk)
        with self._lock:
            first = self._first.setdefault(split, dataclasses.replace(f, logits=torch.empty(0)))
        check_same_samples(f, first)  # first, as load_sources did: the file that differs from its team is named
        check_against_run(f, split, self.manifest, self.sha, self.manifest_path)
        return f


# ---------------------------------------------------------------- a run folder as people browse it


def run_folders(out_dir: Path, sources: list[str]) -> dict[str, Path]:
    """``outputs/NAME/logits/<source>`` of each source: the readable names of a run (links to its current stages),
    or the folders of a run written by an older argse; for studies and benchmarks that read a run folder."""
    return {s: Path(out_dir) / "logits" / s for s in sources}


def run_manifest(out_dir: Path) -> Path:
    return Path(out_dir) / "splits.json"


def folder_sources(out_dir: Path) -> list[str]:
    """The sources a run folder shows under logits/ (see :func:`run_folders`)."""
    root = Path(out_dir) / "logits"
    return sorted(p.name for p in root.iterdir() if (p / "test.safetensors").is_file()) if root.is_dir() else []
