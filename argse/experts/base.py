"""The ``Expert`` protocol, ``build_expert``, and ``StandardExpert``, the one-stage expert most experts subclass.

An expert says only what is different about it: its recipe dataclass, its loss, its sampler
(in the recipe, by registered name) or, for multi-stage methods, its ``train``. Data, model,
training loop, calibration and export are shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from argse.config.recipe_layers import load_recipe
from argse.config.schema import changed
from argse.config.sections import RunConfig
from argse.core import seeds
from argse.core.errors import ArgseError
from argse.core.registry import Registry, load_plugins  # noqa: F401  (re-exported for plugins)
from argse.data.logits import read_logits, split_file
from argse.data.long_tail import HELD_OUT, LTData, Split
from argse.data.metrics import classification_report
from argse.experts.calibration import fit_temperature
from argse.experts.losses import log_prior
from argse.training import (
    ExpertRecipe,
    LoaderBatches,
    Normalize,
    TensorBatches,
    TrainRecipe,
    TrainTask,
    fit,
    load_checkpoint,
    load_module_weights,
    outputs_of,
    trained_by,
)
from argse.training.models import build_model, prepare_model

# The expert registry: expert classes by name (entry-point group ``argse.experts``).
EXPERTS: Registry[type] = Registry("expert", "argse.experts")

register_expert = EXPERTS.register
"""Class decorator: add an expert under ``name``; the class is returned unchanged (``name`` set)."""
get_expert = EXPERTS.get
list_experts = EXPERTS.names


@dataclass
class Exported:
    """A finished expert as the run keeps it, for the experts that build on it and for ``argse.predict``."""

    name: str
    folder: Path
    """Its logits, one ``<split>.safetensors`` per held-out split (argse.logits/1)."""
    model: Path | None = None
    """Its kept weights (argse.checkpoint/1); None for an expert computed from another's logits."""
    source: Exported | None = None
    """The expert a derived expert was computed from."""

    def logits(self, split: str = "test"):
        return read_logits(split_file(self.folder, split))


@dataclass
class ExpertContext:
    """What every expert of one run shares: config, data, device (and data already on it), and where each
    expert trains and what the experts it builds on exported (given by the caller, which keeps the files)."""

    config: RunConfig
    data: LTData
    device: torch.device
    folders: dict[str, Path] = field(default_factory=dict)
    """Expert name -> the folder its training state goes to (the same folder again continues it)."""
    exported: dict[str, Exported] = field(default_factory=dict)
    """Finished experts that others build on (decoupling's ``stage1_from``, a derived expert's ``source``)."""

    def folder(self, name: str) -> Path:
        if name not in self.folders:
            raise ArgseError(f"no training folder was given for expert '{name}'")
        return self.folders[name]

    def finished(self, name: str) -> Exported:
        if name not in self.exported:
            raise ArgseError(f"expert '{name}' must be finished first; train it (make experts EXPERTS={name})")
        return self.exported[name]

    @cached_property
    def train_labels(self) -> torch.Tensor:
        return self.data.train.labels.to(self.device)

    @cached_property
    def normalize(self) -> Normalize:
        return Normalize(self.data.mean, self.data.std, self.device, self.config.runtime.channels_last)

    @cached_property
    def train_batches(self) -> TensorBatches | LoaderBatches:
        """The training images: on the device (in-memory datasets) or decoded by DataLoader workers."""
        images = self.data.train.images
        if isinstance(images, torch.Tensor):
            return TensorBatches(images.to(self.device), self.train_labels, self.normalize)
        return LoaderBatches(images, self.normalize, self.device, self.config.runtime)

    @cached_property
    def log_prior(self) -> torch.Tensor:
        return log_prior(self.data.class_counts).to(self.device)

    def load_shared(self) -> None:
        """Put the training set on the device now, before several threads (--team) share this context."""
        _ = self.train_batches, self.log_prior

    def fingerprint(self) -> dict:
        """What a checkpoint must match to be resumed or reused: the splits and the model."""
        return {
            "splits_sha256": self.data.sha256,
            "model": self.config.model.model_dump(),
            "num_classes": self.data.num_classes,
        }


@runtime_checkable
class Expert(Protocol):
    """Everything the framework calls on an expert (train_experts, launcher, predict)."""

    name: ClassVar[str]
    """Set by ``@register_expert(name)``."""
    Recipe: ClassVar[type]
    """The recipe dataclass, read from experts/<name>.yaml and the config's ``recipes.<name>``."""

    def __init__(self, ctx: ExpertContext, recipe: Any) -> None: ...

    @classmethod
    def requires(cls, recipe: Any) -> list[str]:
        """Experts of the same run that must be finished first (used by --parallel)."""

    def train(self) -> None:
        """Train (continuing from the state in its training folder, if any) and keep the chosen weights in
        ``best.safetensors`` of that folder."""

    def calibrate(self) -> float:
        """Fit and return the softmax temperature on the ``val`` split."""

    def held_out_logits(self) -> dict[str, torch.Tensor]:
        """Raw logits [N, C] of every held-out split, in the split's sample order."""

    def export_record(self) -> dict:
        """What the logits files record as ``config``: the recipe (and any parameters fitted without training)."""

    @classmethod
    def for_inference(
        cls, cfg: RunConfig, exported: Exported, num_classes: int, device: torch.device
    ) -> tuple[nn.Module, float]:
        """The trained network rebuilt from its export (normalised images -> raw logits) and its temperature,
        for ``argse.predict``; its logits equal the exported ones."""


def inference_model(
    cfg: RunConfig, exported: Exported, num_classes: int, device: torch.device
) -> tuple[nn.Module, float]:
    """An exported expert as a network on images, and its temperature (``Expert.for_inference``)."""
    return get_expert(exported.name).for_inference(cfg, exported, num_classes, device)


def build_expert(name: str, ctx: ExpertContext, **changes: Any) -> Expert:
    """The registered expert ``name`` with its recipe for this run; ``changes`` replace recipe fields."""
    cls = get_expert(name)
    recipe = load_recipe(cls, ctx.config)
    return cls(ctx, changed(recipe, **changes) if changes else recipe)


class StandardExpert:
    """Plain cross-entropy on the long-tailed training set."""

    name: ClassVar[str]
    Recipe: ClassVar[type] = ExpertRecipe

    def __init__(self, ctx: ExpertContext, recipe: ExpertRecipe) -> None:
        self.ctx, self.recipe = ctx, recipe
        self.ckpt_dir = ctx.folder(self.name)
        self.model: nn.Module | None = None
        self.temperature: float | None = None

    @property
    def seed(self) -> int:
        """This expert's base seed: the recipe's ``seed``, else one derived from the run seed and the name."""
        own = getattr(self.recipe, "seed", None)
        return own if own is not None else seeds.expert_seed(self.ctx.config.seed, self.name)

    # -- what subclasses change
    @classmethod
    def requires(cls, recipe: Any) -> list[str]:
        """Experts of the same run that must be finished first (used by --parallel)."""
        return []

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets)

    # -- shared machinery
    def new_model(self, dropout: float = 0.0) -> nn.Module:
        ctx = self.ctx
        return prepare_model(ctx.config, ctx.data.num_classes, dropout, ctx.device, seed=self.seed)

    def predict_split(self, split: Split) -> torch.Tensor:
        self.model.eval()
        ctx = self.ctx
        return outputs_of(self.model, split.images, ctx.normalize, ctx.device, ctx.config.runtime)

    def val_metrics(self, logits: torch.Tensor) -> dict[str, float]:
        """Cross-entropy, accuracy, balanced accuracy and per-group accuracy of ``logits`` for the val split."""
        d = self.ctx.data
        labels = d.held_out["val"].labels
        loss = float(F.cross_entropy(logits.float(), labels.to(logits.device)))  # plain CE, whatever the training loss
        return {"loss": loss} | classification_report(logits, labels, d.class_counts, d.groups, d.shots)

    def val_report(self) -> dict[str, float]:
        return self.val_metrics(self.predict_split(self.ctx.data.held_out["val"]))

    def image_task(self, name: str, model: nn.Module, **changes: Any) -> TrainTask:
        """A TrainTask that trains all of ``model`` on the training images; ``changes`` replace fields."""
        ctx = self.ctx
        task = dict(
            name=name,
            module=model,
            data=ctx.train_batches,
            loss_fn=self.loss,
            evaluate=self.val_report,
            num_classes=ctx.data.num_classes,
            fingerprint=ctx.fingerprint() | {"seed": self.seed},
            loss_state=self.loss_state(),
        )
        return TrainTask(**(task | changes))

    def loss_state(self) -> dict[str, torch.Tensor]:
        """Tensors ``loss`` updates across steps, checkpointed with the training state (none by default)."""
        return {}

    def run_fit(self, task: TrainTask, recipe: TrainRecipe, ckpt_dir: Path) -> dict:
        cfg = self.ctx.config
        return fit(task, recipe, ckpt_dir, seed=self.seed, resume=True, device=self.ctx.device, runtime=cfg.runtime)

    def train(self) -> None:
        self.model = self.new_model(self.recipe.dropout)
        self.run_fit(self.image_task(self.name, self.model), self.recipe, self.ckpt_dir)

    def calibrate(self) -> float:
        val = self.ctx.data.held_out["val"]
        self.temperature = fit_temperature(self.predict_split(val), val.labels)
        return self.temperature

    def held_out_logits(self) -> dict[str, torch.Tensor]:
        return {name: self.predict_split(self.ctx.data.held_out[name]) for name in HELD_OUT}

    def export_record(self) -> dict:
        return trained_by(self.recipe)

    # -- inference (argse.predict)
    @classmethod
    def inference_head(cls, model: nn.Module, meta: dict) -> None:
        """Give ``model`` the classifier its best checkpoint holds (``meta``: the checkpoint's record)."""

    @classmethod
    def for_inference(
        cls, cfg: RunConfig, exported: Exported, num_classes: int, device: torch.device
    ) -> tuple[nn.Module, float]:
        path = exported.model
        if path is None or not path.is_file():
            raise ArgseError(f"expert '{cls.name}' has no kept weights in {exported.folder}; train it again")
        tensors, meta = load_checkpoint(path)
        model = build_model(cfg.model, num_classes)
        cls.inference_head(model, meta)
        load_module_weights(model, tensors, path)
        memory = torch.channels_last if cfg.runtime.channels_last else torch.preserve_format
        return model.to(device, memory_format=memory).eval(), exported.logits("test").temperature
