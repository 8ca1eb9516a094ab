"""Classifying new images with a trained team, with the option to abstain (``python -m argse.predict``).

Every expert's network is rebuilt through the expert protocol (``for_inference``), the gate from its
files (argse.gating.store) and the rule from rules.json (argse.rules); no training data is read. An
image that cannot be decoded is named and skipped; the rest are predicted.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from argse import storage
from argse.config import RunConfig
from argse.data import eval_image
from argse.errors import ArgseError
from argse.experts import inference_model
from argse.gating import Gate, mixture_log_probs, read_gate
from argse.images import ImageError, image_suffixes, open_rgb
from argse.listfile import split_list_line
from argse.preprocess import Preprocess, read_preprocess
from argse.rules import read_rules
from argse.selective import decide
from argse.training import Normalize, autocast, make_progress, resolve_device

IMAGE_SUFFIXES = image_suffixes()
"""What a folder given to predict is searched for: every suffix of a format this Pillow opens."""


# ---------------------------------------------------------------- what the run saved


@dataclass
class Team:
    """The networks of one source on images: experts with their temperatures, and the gate for gating."""

    names: list[str]
    models: list[torch.nn.Module]
    temperatures: list[float]
    gate: Gate | None


def load_team(cfg: RunConfig, source: str, num_classes: int, device: torch.device) -> Team:
    gate = read_gate(cfg.paths) if source == "gating" else None
    names = gate.experts if gate is not None else [source]
    loaded = [inference_model(cfg, n, num_classes, device) for n in names]
    return Team(names, [m for m, _ in loaded], [t for _, t in loaded], gate)


# ---------------------------------------------------------------- images


def list_images(target: Path) -> list[Path]:
    if not target.exists():
        raise ArgseError(f"{target} does not exist; give an image file, a folder of images or a list file")
    if target.is_dir():
        found = sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ArgseError(
                f"folder {target} holds no images (files ending in a suffix Pillow opens, e.g. .png, .jpg)"
            )
        return found
    if target.suffix.lower() in IMAGE_SUFFIXES:
        return [target]
    lines = [ln for ln in storage.read_text(target, "list file").splitlines() if ln.strip()]
    paths = [Path(split_list_line(ln)[0]) for ln in lines]  # the label, if any, is ignored
    if not paths:
        raise ArgseError(f"list file {target} names no images; give one image path per line")
    return [p if p.is_absolute() else target.parent / p for p in paths]


def decode(path: Path, prep: Preprocess) -> torch.Tensor:
    """uint8 [3, H, W] as the run's evaluation sees it. An image that cannot be used raises ImageError (the
    caller skips it); a size the model cannot take raises ArgseError (every image of the input is the same)."""
    return eval_image(prep, open_rgb(path, f"image {path}"), f"image {path}")


def check_out(out: Path, inputs: list[Path]) -> None:
    """``--out`` may only create or replace a regular file that is not one of the inputs: the write is a
    rename, which would put a file in place of a link, a device or a pipe."""
    fix = "give --out the path of a new or regular file"
    if out.is_symlink():
        raise ArgseError(f"--out {out} is a symbolic link, which would be replaced by a file; {fix}")
    if out.is_dir():
        raise ArgseError(f"--out {out} is a folder; give a file path such as {out / 'predictions.csv'}")
    if out.exists() and not out.is_file():
        raise ArgseError(f"--out {out} is not a regular file (a device, pipe or socket); {fix}")
    if not out.parent.is_dir():
        raise ArgseError(f"--out {out}: folder {out.parent} does not exist; create it first or {fix}")
    if out.exists():
        st = out.stat()
        for p in inputs:
            try:
                same = os.path.samestat(st, p.stat())
            except OSError:
                continue
            if same:
                raise ArgseError(f"--out {out} is the input {p}, which would be overwritten; {fix}")


# ---------------------------------------------------------------- the prediction


@torch.inference_mode()
def source_probs(team: Team, x: torch.Tensor, protocol: str, runtime) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities of the source for a normalised batch, computed as the evaluation computed them
    from the exported logits (the same autocast, float32 logits, then float64), and the gate weights [B, E]."""
    with autocast(x.device, runtime):
        logits = [m(x).float().cpu() for m in team.models]
    if team.gate is None:
        raw = logits[0] if protocol == "paper" else logits[0] / team.temperatures[0]
        return torch.softmax(raw.double(), 1).numpy(), None
    logp = torch.stack([F.log_softmax((lg / t).double(), 1) for lg, t in zip(logits, team.temperatures, strict=True)])
    log_w = team.gate.log_weights(logp)
    mix = mixture_log_probs(log_w, logp).float()  # the mixture is exported as float32 log-probabilities
    return torch.softmax(mix.double(), 1).numpy(), log_w.exp().numpy()


def write_rows(rows: list[dict], out: Path, fmt: str, experts: list[str] | None, inputs: list[Path] = ()) -> Path:
    check_out(out, list(inputs))  # again: the predictions took a while
    if fmt == "jsonl":
        return storage.write_text(out, "".join(json.dumps(r) + "\n" for r in rows))
    fields = ["path", "class", "probability", "decision", "score", "threshold"]
    fields += [f"weight_{e}" for e in experts or []]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow(r | {f"weight_{e}": w for e, w in (r.get("gate_weights") or {}).items()})
    return storage.write_text(out, buf.getvalue())


def predict_images(cfg: RunConfig, paths: list[Path], source: str | None, method: str, rate: float,
                   batch_size: int) -> tuple[list[dict], list[str], Team]:  # fmt: skip
    """Rows for every decodable image in ``paths`` and the messages for those that are not."""
    rule = read_rules(cfg.paths).rule(source, method, rate)
    prep = read_preprocess(cfg.paths)
    classes = prep.classes
    if len(rule.class_group) != len(classes):
        raise ArgseError(
            f"{cfg.paths.rules} groups {len(rule.class_group)} classes but {cfg.paths.preprocess} names "
            f"{len(classes)}; rerun python -m argse.evaluate for this run"
        )
    device = resolve_device(cfg.runtime)
    team = load_team(cfg, rule.source, len(classes), device)
    normalize = Normalize(prep.mean, prep.std, device, cfg.runtime.channels_last)
    t = rule.t
    rows, skipped = [], []
    with make_progress(cfg.runtime.progress) as progress:
        bar = progress.add_task(f"predict {rule.source}", total=len(paths), info="")
        for start in range(0, len(paths), batch_size):
            batch, images = [], []
            for p in paths[start : start + batch_size]:
                try:
                    images.append(decode(p, prep))
                    batch.append(p)
                except ImageError as exc:
                    skipped.append(f"{exc}; skipped")
            if images:
                x = normalize(torch.stack(images).to(device))
                probs, weights = source_probs(team, x, rule.protocol, cfg.runtime)
                pred, s = decide(probs, rule.class_group, len(rule.groups), rule.alpha, rule.b)
                for i, p in enumerate(batch):
                    row = {"path": str(p), "class": classes[pred[i]], "class_index": int(pred[i]),
                           "probability": float(probs[i, pred[i]]), "decision": "accepted" if s[i] >= t else "rejected",
                           "score": float(s[i]), "threshold": t}  # fmt: skip
                    if weights is not None:
                        row["gate_weights"] = dict(zip(team.names, map(float, weights[i]), strict=True))
                    rows.append(row)
            progress.update(bar, advance=len(paths[start : start + batch_size]))
    return rows, skipped, team
