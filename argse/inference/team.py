"""A trained team loaded from a run's stages for classifying new images, with the option to abstain: the
library of ``python -m argse.predict`` and of ``argse.inference.load``.

Every stage is found from the run's config (argse.stages.run): each expert's network is rebuilt from
its stage through the expert protocol (``for_inference``), the gate from its stage (argse.stages.gate_file)
and the rule from the evaluation's rules.json (argse.reports.rules_file); no training data is read and no lock is
taken. An image file that cannot be decoded is named and skipped; the rest are predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from argse.config.loading import load_run_config, recorded_plugins
from argse.config.schema import Section, parse
from argse.config.sections import RunConfig
from argse.core import distributed, storage
from argse.core.errors import ArgseError
from argse.core.registry import load_plugins
from argse.data.decode import ImageError
from argse.data.preprocess import FILE as PREPROCESS
from argse.data.preprocess import Preprocess, eval_image, read_preprocess
from argse.experts import inference_model
from argse.gating import mixture_log_probs
from argse.inference.inputs import Inputs, decode
from argse.reports.rules_file import SelectiveRule, read_rules
from argse.selective.guarantee import Guarantee
from argse.selective.views import decide
from argse.stages.experts import exported
from argse.stages.gate_file import Gate, read_gate
from argse.stages.run import GATE, RunStages
from argse.training import Normalize, autocast, make_progress, resolve_device

"""What a folder given to predict is searched for: every suffix of a format this Pillow opens."""


# ---------------------------------------------------------------- what the run saved


@dataclass
class Team:
    """The networks of one source on images: experts with their temperatures, and the gate for gating."""

    names: list[str]
    models: list[torch.nn.Module]
    temperatures: list[float]
    gate: Gate | None


def load_team(stages: RunStages, source: str, num_classes: int, device: torch.device) -> Team:
    gate = None
    if source == GATE:
        stage = stages.gate()
        stages.store.verify(stage, [f for f in stage.record.files if not f.endswith(".safetensors") or "gate" in f])
        gate = read_gate(stage.folder)
    names = gate.experts if gate is not None else [source]
    loaded = [inference_model(stages.cfg, exported(stages, n), num_classes, device) for n in names]
    return Team(names, [m for m, _ in loaded], [t for _, t in loaded], gate)


def read_classes(path: Path, count: int) -> list[str]:
    """``--classes``: one class name per line, in class-index order (a list_lt run knows only the indices)."""
    names = [ln.strip() for ln in storage.text_lines(storage.read_text(path, "class-name file"))]
    while names and not names[-1]:
        names.pop()  # a trailing newline or two
    if len(names) != count:
        raise ArgseError(f"class-name file {path} has {len(names)} lines but the run has {count} classes; "
                         f"give one name per line, in class-index order")  # fmt: skip
    for i, name in enumerate(names):
        if not name:
            raise ArgseError(f"class-name file {path}, line {i + 1} is empty; give every class a name")
        if name in names[:i]:
            raise ArgseError(f"class-name file {path}: '{name}' is on lines {names.index(name) + 1} and {i + 1}; "
                             f"class names must differ")  # fmt: skip
    return names


# ---------------------------------------------------------------- the Python API


def pil_images(images) -> list:
    """``images`` as a list of PIL images, or one sentence saying what was given instead."""
    if images is None or isinstance(images, str | Path | bytes):
        raise ArgseError(f"images must be PIL images or an image tensor, got {type(images).__name__}; open files "
                         f"with PIL.Image.open(path) first, or predict them with python -m argse.predict")  # fmt: skip
    if isinstance(images, np.ndarray):
        raise ArgseError("images must be PIL images or an image tensor, got a numpy array; for [N, H, W, 3] uint8 "
                         "images give torch.from_numpy(array).permute(0, 3, 1, 2)")  # fmt: skip
    try:
        listed = list(images)
    except TypeError:
        raise ArgseError(f"images must be PIL images or an image tensor, got {type(images).__name__}") from None
    for i, im in enumerate(listed):
        if not hasattr(im, "getbands"):
            raise ArgseError(f"images[{i}] is a {type(im).__name__}, not a PIL image; give PIL images or one tensor")
    return listed


@dataclass
class Predictor:
    """A run's team and one fitted rule, loaded once (:func:`load`); :meth:`predict` classifies images."""

    cfg: RunConfig
    rule: SelectiveRule
    prep: Preprocess
    team: Team
    classes: list[str]
    device: torch.device
    read: list[Path] = field(default_factory=list)
    """The stage folders the predictor was loaded from."""

    @property
    def input_size(self) -> str:
        """Which images the run's models take, in one phrase."""
        p = self.prep
        if p.image_size is None:
            return f"images of any size (shorter side resized to {p.resize}, then a {p.crop}x{p.crop} centre crop)"
        return f"{p.image_size[1]}x{p.image_size[0]} images, taken as they are"

    def predict(self, images, top_k: int = 1) -> list[dict]:
        """One row per image: ``class`` (the rule's prediction) and ``class_index``, its ``probability``,
        ``decision`` ('accepted' iff ``score`` >= ``threshold``), ``top`` (the ``top_k`` most probable classes,
        when ``top_k`` > 1) and ``gate_weights`` (for gating).

        Args:
            images: a PIL image or a sequence of them (any mode; resized and cropped as the run's evaluation
                does), or a uint8 tensor [N, 3, H, W] / [3, H, W] (0-255) or a float one in [0, 1] (torchvision's
                ``ToTensor``), at the run's size (:attr:`input_size`).
            top_k: how many of the most probable classes each row lists.
        """
        return self.predict_batch(self.as_batch(images), top_k)

    def as_batch(self, images) -> torch.Tensor:
        """[N, 3, H, W] on a 0-255 scale at the models' size; anything else is one sentence."""
        size = self.prep.image_size or [self.prep.crop, self.prep.crop]
        if not torch.is_tensor(images):
            images = [images] if hasattr(images, "getbands") else pil_images(images)  # one PIL image, or several
            if not images:  # an empty batch: no rows
                return torch.empty(0, 3, *size, dtype=torch.uint8)
            return torch.stack([eval_image(self.prep, im, f"image {i}") for i, im in enumerate(images)])
        x = images[None] if images.dim() == 3 else images
        if x.dim() != 4 or x.shape[1] != 3:
            raise ArgseError(f"images must be a [N, 3, H, W] or [3, H, W] RGB tensor, got shape {list(images.shape)}")
        if list(x.shape[2:]) != list(size):
            raise ArgseError(f"the images are {x.shape[3]}x{x.shape[2]} pixels but the models of this run take "
                             f"{size[1]}x{size[0]}; resize them first (or give PIL images)")  # fmt: skip
        if x.dtype == torch.uint8:
            return x
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise ArgseError("the image tensor holds NaN or infinite values; give finite pixel values in [0, 1]")
        if not x.is_floating_point() or x.numel() and (x.min() < 0 or x.max() > 1):
            raise ArgseError(f"a {x.dtype} image tensor must be uint8 (0-255) or floating point in [0, 1]")
        return x * 255

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        """Each expert's network by name, in eval mode on :attr:`device` (they take normalised images)."""
        return dict(zip(self.team.names, self.team.models, strict=True))

    def scores(self, images) -> Scores:
        """What the team computes for ``images`` (as :meth:`predict` takes them) before any rule: every
        expert's raw logits and calibrated probabilities, the gate's weights, and the probabilities of the
        source the rule decides on."""
        return self.batch_scores(self.as_batch(images))

    def batch_scores(self, x: torch.Tensor) -> Scores:
        if len(x) == 0:  # an empty batch: empty scores of the right widths, no model run
            c, names = len(self.classes), self.team.names
            empty = {n: torch.empty(0, c) for n in names}
            weights = None if self.team.gate is None else torch.empty(0, len(names), dtype=torch.float64)
            return Scores(empty, {n: torch.empty(0, c, dtype=torch.float64) for n in names}, weights,
                          torch.empty(0, c, dtype=torch.float64))  # fmt: skip
        x = Normalize(self.prep.mean, self.prep.std, self.device, self.cfg.runtime.channels_last)(x.to(self.device))
        return team_scores(self.team, x, self.rule.protocol, self.cfg.runtime)

    def predict_batch(self, x: torch.Tensor, top_k: int = 1) -> list[dict]:
        """Rows for a batch :meth:`as_batch` made (full precision; the CLI rounds what it writes)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or not 1 <= top_k <= len(self.classes):
            raise ArgseError(f"top_k must be a whole number in [1, {len(self.classes)}] (the run's classes), got "
                             f"{top_k!r}")  # fmt: skip
        if len(x) == 0:
            return []
        scores = self.batch_scores(x)
        probs = scores.source.numpy()
        weights = None if scores.gate_weights is None else scores.gate_weights.numpy()
        rule = self.rule
        pred, s = decide(probs, rule.class_group, len(rule.groups), rule.alpha, rule.b)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        rows = []
        for i in range(len(probs)):
            row = {"class": self.classes[pred[i]], "class_index": int(pred[i]), "probability": float(probs[i, pred[i]]),
                   "decision": "accepted" if s[i] >= rule.t else "rejected", "score": float(s[i]),
                   "threshold": rule.t}  # fmt: skip
            if top_k > 1:
                row["top"] = [{"class": self.classes[j], "probability": float(probs[i, j])} for j in top[i]]
            if weights is not None:
                row["gate_weights"] = dict(zip(self.team.names, map(float, weights[i]), strict=True))
            rows.append(row)
        return rows


def open_predictor(cfg: RunConfig, source: str | None, method: str, rate: float, classes: Path | None = None,
                   device: str | None = None, guarantee: Guarantee | None = None) -> Predictor:  # fmt: skip
    """The team of ``source`` (default: rules.json's) and its rule ``method`` at ``rate`` from run ``cfg``; with
    ``guarantee``, the rule of largest coverage on ``method``'s ladder that meets it instead."""
    if device is not None:
        distributed.check_device(device, "device")  # before anything is read
    load_plugins(recorded_plugins(cfg))  # a plugin the run was trained with, though this command's config omits it
    stages = RunStages(cfg)
    evaluation, splits = stages.evaluation(source), stages.splits()
    stages.store.verify(evaluation, ["rules.json"])
    stages.store.verify(splits, [PREPROCESS])
    rules = read_rules(evaluation.folder)
    rule = rules.rule(source, method, rate) if guarantee is None else rules.guaranteed_rule(source, method, guarantee)
    prep = read_preprocess(splits.file(PREPROCESS))
    if len(rule.class_group) != len(prep.classes):
        raise ArgseError(
            f"{rules.path} groups {len(rule.class_group)} classes but the run's preprocess.json names "
            f"{len(prep.classes)}; rerun python -m argse.evaluate for this run"
        )
    names = read_classes(Path(classes), len(prep.classes)) if classes is not None else prep.classes
    dev = (
        resolve_device(cfg.runtime)
        if device is None
        else distributed.init(device, cfg.runtime.dist_timeout_s, "device")
    )
    team = load_team(stages, rule.source, len(names), dev)
    read = [evaluation.folder, splits.folder, *(stages.source(n).folder for n in team.names)]
    if team.gate is not None:
        read.append(stages.gate().folder)
    return Predictor(cfg, rule, prep, team, names, dev, read)


def load(config_or_run_dir: str | Path | None = None, *, rate: float = 0.2, method: str = "plugin_worst",
         source: str | None = None, overrides: Sequence[str] = (), classes: str | Path | None = None,
         device: str | None = None, risk: float | Sequence[float] | None = None, delta: float = 0.05,
         risk_of: str = "worst") -> Predictor:  # fmt: skip
    """A trained run's team and fitted rule, ready to classify images with :meth:`Predictor.predict`.

    Args:
        config_or_run_dir: the run's config file (as given to the commands, with ``overrides`` as with
            ``--set``), or its output folder ``outputs/NAME`` (whose config.yaml is read). None: the built-in
            default config.
        rate: the target rejection rate, one of ``evaluate.rejection_grid``.
        method: the fitted rejector (chow, plugin_balanced, plugin_worst, ...).
        source: gating or an expert; default gating when a gate was evaluated, else the first evaluated source.
        classes: a file of class names, one per line in class-index order (default: the run's own).
        device: e.g. 'cpu' or 'cuda:1'; default the run's ``runtime.device``.
        risk: instead of ``rate``, abstain so that the risk ``risk_of`` (balanced, worst, or groups with one risk
            per group) is at most ``risk`` with probability at least 1 - ``delta`` over the fitting sample
            (argse.selective.guarantee); one sentence when no rule of ``method`` can promise it.
    """
    args = load_arguments(rate, method, source, overrides, classes, device)
    target = None if risk is None else guarantee_of(risk, delta, risk_of)
    cfg = load_run_config(config_or_run_dir, args.overrides)
    classes_file = Path(args.classes) if args.classes is not None else None
    return open_predictor(cfg, args.source, args.method, args.rate, classes_file, args.device, target)


class LoadArguments(Section):
    """:func:`load`'s arguments, checked as the CLI checks its options."""

    rate: float = Field(ge=0, lt=1)
    method: str
    source: str | None
    overrides: list[str]
    classes: str | None
    device: str | None


def load_arguments(rate, method, source, overrides, classes, device) -> LoadArguments:
    """The arguments of :func:`load`, or one sentence naming the first bad one."""
    as_list = list(overrides) if isinstance(overrides, list | tuple) else overrides
    values = {"rate": rate.item() if isinstance(rate, np.generic) else rate, "method": method, "source": source,
              "overrides": as_list, "classes": str(classes) if isinstance(classes, Path) else classes,
              "device": device}  # fmt: skip
    return parse(LoadArguments, values, noun="argument")


def guarantee_of(risk: float | Sequence[float], delta: float, of: str) -> Guarantee:
    """A guarantee from its parts, each checked as evaluate.guarantees checks them (one sentence on a bad one)."""
    from argse.config.sections import GuaranteeConfig

    listed = risk if isinstance(risk, str) or np.ndim(risk) == 0 else list(np.asarray(risk).tolist())
    listed = listed.item() if isinstance(listed, np.generic) else listed
    g = parse(GuaranteeConfig, {"risk": listed, "delta": delta, "risk_of": of}, noun="argument")
    return Guarantee(tuple(g.risk), g.delta, g.risk_of)


# ---------------------------------------------------------------- the prediction


@dataclass
class Scores:
    """A batch as the team sees it, before any rule (on the CPU)."""

    logits: dict[str, torch.Tensor]
    """Each expert's raw logits [N, K] (float32), as its exported logits files hold them."""
    probabilities: dict[str, torch.Tensor]
    """Each expert's calibrated probabilities softmax(logits / T) [N, K] (float64)."""
    gate_weights: torch.Tensor | None
    """The gate's weight of each expert [N, E] (gating only)."""
    source: torch.Tensor
    """The probabilities [N, K] (float64) the rule decides on: the mixture for gating, else the expert's
    (calibrated, or raw softmax under protocol paper)."""


@torch.inference_mode()
def team_scores(team: Team, x: torch.Tensor, protocol: str, runtime) -> Scores:
    """The scores of a normalised batch, computed as the evaluation computed them from the exported logits (the
    same autocast, float32 logits, then float64)."""
    with autocast(x.device, runtime):
        logits = [m(x).float().cpu() for m in team.models]
    calibrated = [torch.softmax((lg / t).double(), 1) for lg, t in zip(logits, team.temperatures, strict=True)]
    per_expert = dict(zip(team.names, logits, strict=True)), dict(zip(team.names, calibrated, strict=True))
    if team.gate is None:
        source = torch.softmax(logits[0].double(), 1) if protocol == "paper" else calibrated[0]
        return Scores(*per_expert, None, source)
    logp = torch.stack([F.log_softmax((lg / t).double(), 1) for lg, t in zip(logits, team.temperatures, strict=True)])
    log_w = team.gate.log_weights(logp)
    mix = mixture_log_probs(log_w, logp).float()  # the mixture is exported as float32 log-probabilities
    return Scores(*per_expert, log_w.exp(), torch.softmax(mix.double(), 1))


def predict_files(
    predictor: Predictor, inputs: Inputs, batch_size: int, top_k: int = 1
) -> tuple[list[dict], list[str]]:
    """Rows (with ``path``, and ``label`` / ``correct`` when labelled) for every decodable image of ``inputs``,
    and the messages for those that are not."""
    labels = inputs.labels or [None] * len(inputs.paths)
    rows, skipped, todo = [], [], list(zip(inputs.paths, labels, strict=True))
    with make_progress(predictor.cfg.runtime.progress) as progress:
        bar = progress.add_task(f"predict {predictor.rule.source}", total=len(todo), info="")
        for start in range(0, len(todo), batch_size):
            batch, images = [], []
            for p, y in todo[start : start + batch_size]:
                try:
                    images.append(decode(p, predictor.prep))
                    batch.append((p, y))
                except ImageError as exc:
                    skipped.append(f"{exc}; skipped")
            if images:
                for (p, y), row in zip(batch, predictor.predict_batch(torch.stack(images), top_k), strict=True):
                    labelled = {} if y is None else {"label": y, "correct": row["class_index"] == y}
                    rows.append({"path": str(p)} | row | labelled)
            progress.update(bar, advance=len(todo[start : start + batch_size]))
    return rows, skipped
