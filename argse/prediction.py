"""Classifying new images with a trained team, with the option to abstain (``python -m argse.predict``).

Every expert's network is rebuilt through the expert protocol (``for_inference``), the gate from its
files (argse.gating.store) and the rule from rules.json (argse.rules); no training data is read. An
image that cannot be decoded is named and skipped; the rest are predicted.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from argse import storage
from argse.config import RunConfig
from argse.data import eval_image
from argse.errors import ArgseError
from argse.experts import inference_model
from argse.gating import Gate, mixture_log_probs, read_gate
from argse.preprocess import Preprocess, read_preprocess
from argse.rules import read_rules
from argse.selective import decide
from argse.training import Normalize, autocast, make_progress, resolve_device

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


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
            raise ArgseError(f"folder {target} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return found
    if target.suffix.lower() in IMAGE_SUFFIXES:
        return [target]
    lines = [ln.split()[0] for ln in target.read_text().splitlines() if ln.strip()]
    return [p if p.is_absolute() else target.parent / p for p in map(Path, lines)]


def decode(path: Path, prep: Preprocess) -> torch.Tensor:
    """uint8 [3, H, W] as the run's evaluation sees it; raises ArgseError for a size the model cannot take."""
    with Image.open(path) as im:
        image = im.convert("RGB")
    return eval_image(prep, image, f"image {path}")


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


def write_rows(rows: list[dict], out: Path, fmt: str, experts: list[str] | None) -> Path:
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
                except (UnidentifiedImageError, OSError, ValueError) as exc:
                    skipped.append(f"image {p} cannot be decoded ({type(exc).__name__}: {exc}); skipped")
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
