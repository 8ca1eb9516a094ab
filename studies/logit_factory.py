"""Hand-made logits files and their split manifest, no training involved: the fixtures of the gating and
selective tests, and the experts of ``studies.synthetic_logits``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from argse.config.loading import load_run_config
from argse.data import splits
from argse.data.logits import split_file, write_logits
from argse.stages.manage import import_run
from argse.stages.run import RunStages

SPLIT_SIZES = {"val": 20, "tune": 40, "test": 40}  # per class


def peaked(
    labels: torch.Tensor,
    target: torch.Tensor,
    conf: torch.Tensor,
    num_classes: int,
    second: torch.Tensor | None = None,
    second_conf: float = 0.0,
) -> torch.Tensor:
    """Log-probabilities with ``conf`` on ``target`` (and optionally ``second_conf`` on ``second``), the rest uniform."""
    n = len(labels)
    rest = (1 - conf - second_conf) / (num_classes - 1 - (second is not None))
    p = rest.view(-1, 1).repeat(1, num_classes)
    p[torch.arange(n), target] = conf
    if second is not None:
        p[torch.arange(n), second] = second_conf
    return p.log()


def split_rows(
    num_classes: int, split_sizes: dict[str, int] = SPLIT_SIZES
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(labels, indices) of every held-out split, class by class as the data core makes them."""
    rows = {}
    for s, (split, per_class) in enumerate(split_sizes.items()):
        labels = torch.arange(num_classes).repeat_interleave(per_class)
        rows[split] = labels, torch.arange(len(labels)) + 1000 * s
    return rows


def write_manifest(
    out_dir: Path,
    num_classes: int,
    class_counts: list[int],
    split_sizes: dict[str, int] = SPLIT_SIZES,
    rows: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> str:
    """The run's splits.json for these hand-made splits (or for ``rows``: (labels, indices) per split, as
    :func:`split_rows` gives them); returns its sha256."""
    rows = rows or split_rows(num_classes, split_sizes)
    record = {
        "format": splits.FORMAT,
        "dataset": "synthetic_lt",
        "seed": 0,
        "classes": [f"class_{c}" for c in range(num_classes)],
        "class_counts": class_counts,
        "splits": {"train": []} | {split: idx.tolist() for split, (_, idx) in rows.items()},
        "labels": {split: y.tolist() for split, (y, _) in rows.items()},
    }
    splits.write_manifest(Path(out_dir) / "splits.json", record)
    return splits.manifest_sha256(record)


def write_run(
    out_dir: Path,
    experts: dict,
    num_classes: int,
    class_counts: list[int],
    seed: int = 0,
    split_sizes: dict[str, int] = SPLIT_SIZES,
    overrides: list[str] = (),
) -> None:
    """``experts``: name -> fn(labels, generator) -> logits [N, C]. Writes every held-out split and the split
    manifest, and imports them as the stages of run ``out_dir`` (``output_dir`` and ``name`` from it, the
    experts named, then ``overrides`` as with --set: the settings the commands that read them are given);
    ``split_sizes``: samples per class of each held-out split."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(
        prefix=".logit_factory-", dir=out_dir.parent if out_dir.parent.is_dir() else None
    ) as tmp:
        folder = Path(tmp)
        sha = write_manifest(folder, num_classes, class_counts, split_sizes)
        for s, (split, (labels, indices)) in enumerate(split_rows(num_classes, split_sizes).items()):
            for name, fn in experts.items():
                g = torch.Generator().manual_seed(seed + 17 * s + len(name))
                write_logits(
                    split_file(folder / "logits" / name, split), fn(labels, g).float(), labels, indices, expert=name,
                    dataset="synthetic_lt", split=split, temperature=1.0, class_counts=class_counts,
                    splits_sha256=sha, config={},
                )  # fmt: skip
        sets = [f"output_dir={out_dir.parent}", f"name={out_dir.name}", f"experts=[{', '.join(experts)}]", *overrides]
        import_run(RunStages(load_run_config(None, sets)), folder, None)
