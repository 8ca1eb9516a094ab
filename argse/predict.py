"""Classify new images with a trained team, with the option to abstain.

``python -m argse.predict --config RUN.yaml INPUT [--rate 0.2] [--source gating] [--method plugin_worst]
[--out predictions.csv] [--format csv|jsonl]``

INPUT is an image file, a folder (searched recursively) or a list file (``.txt``: one image path per
line, relative to the list's folder, optionally followed by a label, which is ignored). Every
expert's ``best.safetensors`` and temperature, the gate and the rule that ``argse.evaluate`` fitted
(``outputs/NAME/evaluation/rules.json``) are loaded; no training data is read. One row per image:
path, predicted class, its probability, accepted or rejected, the rule's score and threshold, and
the gate weights. An image that cannot be decoded is named on stderr and skipped; the rest are
predicted.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from argse import cli, storage
from argse.config import RunConfig, from_dict
from argse.data import PREPROCESS_FORMAT, prepare_data, preprocess_record
from argse.errors import ArgseError
from argse.evaluate import RULES_FORMAT
from argse.experts import LogitsExpert, get_expert, list_experts, load_plugins
from argse.experts.derived import source_digest
from argse.gating import GateMLP, gating_features, mixture_log_probs
from argse.logits import load_sources
from argse.models import build_model
from argse.selective import decide
from argse.training import (
    Normalize,
    autocast,
    load_checkpoint,
    load_module_weights,
    make_progress,
    resolve_device,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


# ---------------------------------------------------------------- what the run saved


def load_rule(cfg: RunConfig, source: str | None, method: str, rate: float) -> tuple[dict, str, dict]:
    """rules.json, the source it names (default: gating if fitted, else the first) and its rule at ``rate``."""
    path = cfg.out_dir / "evaluation" / "rules.json"
    if not path.is_file():
        raise ArgseError(f"run '{cfg.name}' has no fitted rejector ({path} is missing); run python -m argse.evaluate "
                         f"with the same --config and --set first")  # fmt: skip
    rules = json.loads(path.read_text())
    if rules.get("format") != RULES_FORMAT:
        raise ArgseError(f"{path} is not an argse rules file (format {rules.get('format')!r}); rerun argse.evaluate")
    fitted = rules["rules"]
    source = source or ("gating" if "gating" in fitted else next(iter(fitted)))
    if source not in fitted:
        raise ArgseError(f"no rejector was fitted for source '{source}'; fitted sources: {', '.join(fitted)}")
    if method not in fitted[source]:
        raise ArgseError(f"no '{method}' rejector was fitted for {source}; fitted methods: {', '.join(fitted[source])}")
    rows = [r for r in fitted[source][method] if abs(r["rate"] - rate) < 1e-9]
    if not rows:
        rates = ", ".join(f"{r['rate']:g}" for r in fitted[source][method])
        raise ArgseError(f"no rule was fitted for rejection rate {rate:g}; fitted rates: {rates}")
    return rules, source, rows[0]


def load_preprocess(cfg: RunConfig) -> dict:
    """preprocess.json (written by train_experts); runs older than it rebuild it once from their data."""
    path = cfg.out_dir / "preprocess.json"
    if not path.is_file():
        try:
            record = preprocess_record(prepare_data(cfg), cfg.data)
        except ArgseError as exc:
            raise ArgseError(f"{path} is missing and the run's data cannot rebuild it ({exc})") from None
        storage.write_json(path, record)
        return record
    record = json.loads(path.read_text())
    if record.get("format") != PREPROCESS_FORMAT:
        raise ArgseError(f"{path} is not an argse preprocess file; rerun train_experts or delete it")
    return record


@dataclass
class Team:
    """The models of one source: experts with their temperatures, and the gate when the source is gating."""

    names: list[str]
    models: list[torch.nn.Module]
    temperatures: list[float]
    gate: GateMLP | None
    gate_info: dict | None


class DerivedNet(torch.nn.Module):
    """An expert built from another's logits, on images: the source network, its temperature, the adjustment."""

    def __init__(self, source: torch.nn.Module, temperature: float, expert: LogitsExpert, counts: list[int]) -> None:
        super().__init__()
        self.source, self.temperature, self.expert, self.counts = source, temperature, expert, counts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expert.adjust(self.source(x).float() / self.temperature, self.counts)


def load_derived(cfg: RunConfig, cls: type, name: str, num_classes: int, device: torch.device):
    """A LogitsExpert rebuilt from what its export recorded (source, recipe, fitted parameters)."""
    (f,) = load_sources(cfg.out_dir, [name], ["test"])["test"]
    record = {k: v for k, v in f.config.items() if k not in ("fitted", "source_digest")}
    expert = cls(None, from_dict(cls.Recipe, record, f"the export of {name}"), f.config.get("fitted"))
    (src,) = load_sources(cfg.out_dir, [expert.recipe.source], ["test"])["test"]
    if f.config.get("source_digest") != source_digest(src):
        raise ArgseError(
            f"'{name}' was computed from an earlier export of '{expert.recipe.source}' (retrained since); "
            f"rerun python -m argse.train_experts --experts {name} so both match"
        )
    source, t_source = load_expert(cfg, expert.recipe.source, num_classes, device)
    return DerivedNet(source, t_source, expert, f.class_counts).eval(), f.temperature


def load_expert(cfg: RunConfig, name: str, num_classes: int, device: torch.device) -> tuple[torch.nn.Module, float]:
    cls = get_expert(name) if name in list_experts() else None
    if cls is not None and issubclass(cls, LogitsExpert):
        return load_derived(cfg, cls, name, num_classes, device)
    path = cfg.ckpt_dir / name / "best.safetensors"
    if not path.is_file():
        raise ArgseError(f"expert '{name}' has no checkpoint at {path}; train it first (make experts EXPERTS={name})")
    tensors, _ = load_checkpoint(path)
    model = build_model(cfg.model, num_classes)
    if "model.fc.scales" in tensors:  # decoupling with LWS keeps the stage-1 classifier and per-class scales
        from argse.experts.decoupling import LWSClassifier

        model.fc = LWSClassifier(model.fc)
    load_module_weights(model, tensors, path)
    # The temperature fitted on val travels with the exported logits, which must be this run's.
    temperature = load_sources(cfg.out_dir, [name], ["test"])["test"][0].temperature
    memory = torch.channels_last if cfg.runtime.channels_last else torch.preserve_format
    return model.to(device, memory_format=memory).eval(), temperature


def load_team(cfg: RunConfig, source: str, num_classes: int, device: torch.device) -> Team:
    if source != "gating":
        model, t = load_expert(cfg, source, num_classes, device)
        return Team([source], [model], [t], None, None)
    info_path = cfg.out_dir / "gating" / "gate.json"
    if not info_path.is_file():
        raise ArgseError(f"run '{cfg.name}' has no gate ({info_path}); run python -m argse.train_gating first")
    info = json.loads(info_path.read_text())
    names = info["experts"]
    loaded = [load_expert(cfg, n, num_classes, device) for n in names]
    gate = None
    if info["gate"] == "learned":
        tensors, _ = storage.load_tensors(cfg.out_dir / "gating" / "gate.safetensors", "gate")
        gcfg = info["config"]
        gate = GateMLP(info["feature_dim"], len(names), gcfg["hidden"], gcfg["dropout"])
        gate.mean, gate.std = tensors["mean"], tensors["std"]
        gate.load_state_dict(tensors)
        gate.eval()
    return Team(names, [m for m, _ in loaded], [t for _, t in loaded], gate, info)


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


def decode(path: Path, prep: dict) -> torch.Tensor:
    """uint8 [3, H, W] as the run's evaluation sees it; raises ArgseError for a size the model cannot take."""
    with Image.open(path) as im:
        image = im.convert("RGB")
    if prep["image_size"] is None:
        from argse.listfile import eval_transform

        return eval_transform(prep["resize"], prep["crop"])(image)
    h, w = prep["image_size"]
    if image.size != (w, h):
        raise ArgseError(f"image {path} is {image.size[0]}x{image.size[1]} pixels but the models of this run take "
                         f"{w}x{h}; resize it to {w}x{h} first")  # fmt: skip
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------- the prediction


@torch.inference_mode()
def source_probs(team: Team, x: torch.Tensor, protocol: str, runtime) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities of the source for a normalised batch, computed as the evaluation computed them
    from the exported logits (the same autocast, float32 logits, then float64), and the gate weights [B, E]."""
    with autocast(x.device, runtime):
        logits = [m(x).float().cpu() for m in team.models]
    if team.gate_info is None:
        raw = logits[0] if protocol == "paper" else logits[0] / team.temperatures[0]
        return torch.softmax(raw.double(), 1).numpy(), None
    logp = torch.stack([F.log_softmax((lg / t).double(), 1) for lg, t in zip(logits, team.temperatures, strict=True)])
    if team.gate is not None:
        gcfg = team.gate_info["config"]
        feats = gating_features(logp.exp(), gcfg["top_k"], gcfg["features"] == "rich+posteriors")
        log_w = F.log_softmax(team.gate(feats), 1).double()
    else:
        w = torch.tensor(fixed_mixture(team.gate_info), dtype=torch.float64)
        log_w = w.clamp_min(1e-300).log().expand(len(x), -1)
    mix = mixture_log_probs(log_w, logp).float()  # the mixture is exported as float32 log-probabilities
    return torch.softmax(mix.double(), 1).numpy(), log_w.exp().numpy()


def fixed_mixture(info: dict) -> list[float]:
    n = len(info["experts"])
    if info["gate"] == "uniform":
        return [1.0 / n] * n
    w = info["config"]["fixed_weights"]
    return [v / sum(w) for v in w]


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
    rules, source, rule = load_rule(cfg, source, method, rate)
    prep = load_preprocess(cfg)
    classes = prep["classes"]
    device = resolve_device(cfg.runtime)
    team = load_team(cfg, source, len(classes), device)
    normalize = Normalize(prep["mean"], prep["std"], device, cfg.runtime.channels_last)
    class_group = np.asarray(rules["class_group"])
    k = len(rules["groups"])
    alpha, b, t = np.asarray(rule["alpha"], float), np.asarray(rule["b"], float), float(rule["t"])
    rows, skipped = [], []
    with make_progress(cfg.runtime.progress) as progress:
        bar = progress.add_task(f"predict {source}", total=len(paths), info="")
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
                probs, weights = source_probs(team, x, rules["protocol"], cfg.runtime)
                pred, s = decide(probs, class_group, k, alpha, b)
                for i, p in enumerate(batch):
                    row = {"path": str(p), "class": classes[pred[i]], "class_index": int(pred[i]),
                           "probability": float(probs[i, pred[i]]), "decision": "accepted" if s[i] >= t else "rejected",
                           "score": float(s[i]), "threshold": t}  # fmt: skip
                    if weights is not None:
                        row["gate_weights"] = dict(zip(team.names, map(float, weights[i]), strict=True))
                    rows.append(row)
            progress.update(bar, advance=len(paths[start : start + batch_size]))
    return rows, skipped, team


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("input", help="an image file, a folder of images, or a list file of image paths")
    parser.add_argument("--rate", type=float, default=0.2, help="target rejection rate (one of evaluate's grid)")
    parser.add_argument("--source", default=None, help="gating or an expert (default: gating when fitted)")
    parser.add_argument("--method", default="plugin_worst", help="the fitted rejector: chow, plugin_balanced, ...")
    parser.add_argument("--out", default=None, help="output file (default: predictions.csv or .jsonl)")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    load_plugins(cfg.plugins)  # the team may hold plugin experts
    paths = list_images(Path(args.input))
    rows, skipped, team = predict_images(cfg, paths, args.source, args.method, args.rate, args.batch_size)
    for message in skipped:
        print(f"warning: {message}", file=sys.stderr)
    out = Path(args.out or f"predictions.{args.format}")
    write_rows(rows, out, args.format, team.names if team.gate_info else None)
    accepted = sum(r["decision"] == "accepted" for r in rows)
    cli.console().print(f"{len(rows)} images predicted ({accepted} accepted, {len(rows) - accepted} rejected, "
                        f"{len(skipped)} undecodable); written: {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
