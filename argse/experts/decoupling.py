"""``decoupling``: the two-stage method of Kang et al. (ICLR 2020): cRT, tau-norm and LWS.

Stage 1 learns the representation with plain CE on the long-tailed data. Stage 2 freezes the
backbone and re-balances only the classifier. With BatchNorm frozen and no stage-2
augmentation the backbone is a fixed function, so its features are computed once (the
feature cache) and stage 2 trains a linear layer on them: the same result, far less work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from argse.config.schema import Section, changed, seed_field
from argse.core import seeds
from argse.core.errors import ArgseError
from argse.data.long_tail import Images
from argse.experts.base import StandardExpert, register_expert
from argse.training import TensorBatches, TrainRecipe, load_checkpoint, load_module_weights, outputs_of, save_weights


def _stage1() -> TrainRecipe:
    return TrainRecipe(
        epochs=180, lr=0.1, weight_decay=1e-4, warmup_epochs=5, milestones=[80, 140, 160], gamma=0.1, dropout=0.1,
        checkpoint="best_val",
    )  # fmt: skip


def _stage2() -> TrainRecipe:
    return TrainRecipe(
        epochs=76,
        lr=0.01,
        weight_decay=1e-4,
        warmup_epochs=0,
        milestones=[40, 60],
        gamma=0.1,
        sampler="balanced",
        augment=False,
        checkpoint="best_val",
    )


class DecouplingRecipe(Section):
    stage1: TrainRecipe = Field(default_factory=_stage1)
    """Representation learning: CE, instance sampling, whole model."""
    stage2: TrainRecipe = Field(default_factory=_stage2)
    """Classifier re-training: balanced sampling, backbone frozen."""
    stage1_from: Literal["train", "ce"] = "train"
    """'ce' reuses the finished ce expert of the same run (same data, splits and model) as stage 1."""
    classifier: Literal["crt", "tau_norm", "lws"] = "crt"
    """crt: retrain the linear layer; tau_norm: W / ||W||^tau (no training); lws: learn per-class scales."""
    reset_classifier: bool = True
    """crt only: re-initialise the classifier before stage 2."""
    bn: Literal["frozen", "rebalanced"] = "frozen"
    """frozen: BatchNorm in eval mode; rebalanced: running statistics re-estimated under balanced sampling."""
    feature_cache: bool = True
    """Train stage 2 on backbone features computed once (only when bn is frozen)."""
    cache_views: int = Field(1, ge=1)
    """Augmented views per image in the feature cache when stage2.augment is on."""
    tau_grid: list[Annotated[float, Field(ge=0)]] = Field([round(0.1 * i, 1) for i in range(31)], min_length=1)
    """tau_norm: candidates for tau, picked by balanced accuracy on val."""
    tau_norm_bias: Literal["drop", "scale"] = "drop"
    """tau_norm: drop the classifier bias (Kang et al.) or divide it by the same norm^tau."""
    seed: int | None = seed_field(None)
    """Base seed of stage 2 (and of stage 1 when trained here); default: derived from the run seed and the name."""

    @model_validator(mode="after")
    def _check(self) -> DecouplingRecipe:
        if self.bn == "rebalanced" and self.classifier == "tau_norm":
            raise ValueError("bn: rebalanced needs a trained classifier (classifier: crt or lws)")
        return self


class LWSClassifier(nn.Module):
    """Learnable weight scaling: logits of the stage-1 classifier times a learned per-class scale."""

    def __init__(self, fc: nn.Linear) -> None:
        super().__init__()
        self.fc = fc.requires_grad_(False)
        self.scales = nn.Parameter(torch.ones(fc.out_features, device=fc.weight.device))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features) * self.scales


def tau_normalized(fc: nn.Linear, tau: float, bias: str = "drop") -> nn.Linear:
    """Kang et al.'s tau-normalisation: each class weight w_c divided by ||w_c||^tau.

    ``bias``: 'drop' (Kang et al.: logits are x . w_c / ||w_c||^tau) or 'scale' (b_c divided by the
    same factor, so tau = 0 is exactly the stage-1 classifier). Keeping the bias unscaled would
    undo the method: a CE-trained bias favours the head classes, and shrinking the weights only
    makes it weigh more.
    """
    norm = fc.weight.norm(dim=1, keepdim=True).pow(tau)
    out = nn.Linear(fc.in_features, fc.out_features).to(fc.weight.device)
    with torch.no_grad():
        out.weight.copy_(fc.weight / norm)
        out.bias.copy_(fc.bias / norm.squeeze(1) if bias == "scale" else torch.zeros_like(fc.bias))
    return out.requires_grad_(False)


@register_expert("decoupling")
class DecouplingExpert(StandardExpert):
    """Decoupling (Kang et al. 2020): CE representation, then a class-balanced classifier (cRT / tau-norm / LWS)."""

    Recipe = DecouplingRecipe

    @classmethod
    def requires(cls, recipe: DecouplingRecipe) -> list[str]:
        return [] if recipe.stage1_from == "train" else [recipe.stage1_from]

    @property
    def cached(self) -> bool:
        return self.recipe.feature_cache and self.recipe.bn == "frozen"

    # ---------------------------------------------------------------- stage 1
    def stage1(self) -> nn.Module:
        r, ctx = self.recipe, self.ctx
        self.model = self.new_model(r.stage1.dropout)
        if r.stage1_from == "train":
            self.run_fit(self.image_task(f"{self.name}/stage1", self.model), r.stage1, self.ckpt_dir / "stage1")
            return self.model
        path = ctx.finished(r.stage1_from).model
        if path is None:
            raise ArgseError(
                f"stage1_from: {r.stage1_from} has no network of its own (it is computed from another expert's "
                f"logits); set stage1_from: train or name a trained expert"
            )
        tensors, meta = load_checkpoint(path)
        mine = ctx.fingerprint()
        for key, value in mine.items():
            if meta["fingerprint"].get(key) != value:
                raise ArgseError(
                    f"cannot reuse {path} as stage 1: its '{key}' differs from this run's "
                    f"(different data, splits or model); retrain it or set stage1_from: train"
                )
        load_module_weights(self.model, tensors, path)
        return self.model

    # ---------------------------------------------------------------- stage 2
    def new_classifier(self, fc: nn.Linear) -> nn.Module:
        if self.recipe.classifier == "lws":
            return LWSClassifier(fc)
        if self.recipe.reset_classifier:
            fc = nn.Linear(fc.in_features, fc.out_features).to(fc.weight.device)
            g = seeds.generator(self.seed, "classifier_reset")
            with torch.no_grad():
                fc.weight.copy_(torch.randn(fc.weight.shape, generator=g) * (2.0 / fc.in_features) ** 0.5)
                fc.bias.zero_()
        return fc

    def features(self, images: Images, views: int = 0) -> torch.Tensor:
        """Frozen-backbone features on the device; ``views`` > 0 gives that many augmented copies instead.

        Under torchrun each rank computes its shard and every rank receives all of them, once.
        """
        ctx, backbone = self.ctx, self.model.backbone
        backbone.eval()
        run = ctx.config.runtime
        if not views:
            return outputs_of(backbone, images, ctx.normalize, ctx.device, run).to(ctx.device)
        g = seeds.generator(self.seed, "feature_views", ctx.device)
        return torch.cat(
            [
                outputs_of(backbone, images, ctx.normalize, ctx.device, run, augment=g).to(ctx.device)
                for _ in range(views)
            ]
        )

    def stage2_train_mode(self) -> None:
        self.model.eval()
        if self.recipe.bn == "rebalanced":
            for m in self.model.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()

    def stage2(self) -> None:
        r, ctx, model = self.recipe, self.ctx, self.model
        model.requires_grad_(False)
        fingerprint = ctx.fingerprint() | {
            "stage1_from": r.stage1_from,
            "classifier": r.classifier,
            "bn": r.bn,
            "reset": r.reset_classifier,
            "seed": self.seed,
        }
        if r.classifier == "tau_norm":
            self.pick_tau()
            return
        model.fc = self.new_classifier(model.fc)
        params = (
            [p for p in model.fc.parameters() if p.requires_grad]
            if r.classifier == "lws"
            else list(model.fc.requires_grad_(True).parameters())
        )
        name, ckpt = f"{self.name}/stage2", self.ckpt_dir / "stage2"
        if self.cached:
            self.stage2_on_features(name, ckpt, params, fingerprint)
            return
        # The step runs the whole model; only what changes (fc, or fc and BN statistics) is checkpointed.
        task = self.image_task(
            name,
            model if r.bn == "rebalanced" else model.fc,
            network=model,
            params=params,
            train_mode=self.stage2_train_mode,
            loss_fn=F.cross_entropy,
            fingerprint=fingerprint,
        )
        self.stage2_best = self.run_fit(task, r.stage2, ckpt)

    def stage2_on_features(self, name: str, ckpt: Path, params: list[nn.Parameter], fingerprint: dict) -> None:
        """Stage 2 on the feature cache: the classifier alone, trained and validated on fixed features."""
        r, ctx, model = self.recipe, self.ctx, self.model
        views = r.cache_views if r.stage2.augment else 0
        feats = self.features(ctx.data.train.images, views)
        labels = ctx.train_labels.repeat(max(views, 1))
        val = ctx.data.held_out["val"]
        val_feats = self.features(val.images)

        def evaluate() -> dict[str, float]:
            model.fc.eval()
            with torch.inference_mode():
                logits = model.fc(val_feats).float().cpu()
            return self.val_metrics(logits)

        task = self.image_task(
            name,
            model.fc,
            params=params,
            data=TensorBatches(feats, labels, lambda x, _crops: x),
            loss_fn=F.cross_entropy,
            evaluate=evaluate,
            fingerprint=fingerprint,
            epoch_size=len(ctx.train_labels),
        )
        # Augmented views are fixed in the cache, so the loop itself must not augment again.
        self.stage2_best = self.run_fit(task, changed(r.stage2, augment=False), ckpt)

    def pick_tau(self) -> None:
        """tau-norm: no training; the tau with the best balanced accuracy on val (ties: smaller tau)."""
        ctx, model = self.ctx, self.model
        val = ctx.data.held_out["val"]
        feats = self.features(val.images)
        best = None
        for tau in self.recipe.tau_grid:
            fc = tau_normalized(model.fc, tau, self.recipe.tau_norm_bias)
            with torch.inference_mode():
                logits = fc(feats).float().cpu()
            acc = self.val_metrics(logits)["balanced_acc"]
            if best is None or acc > best[0]:
                best = (acc, tau)
        self.tau = best[1]
        model.fc = tau_normalized(model.fc, self.tau, self.recipe.tau_norm_bias)

    @classmethod
    def inference_head(cls, model: nn.Module, meta: dict) -> None:
        if meta.get("classifier") == "lws":  # LWS keeps the stage-1 classifier and learns per-class scales
            model.fc = LWSClassifier(model.fc)

    def train(self) -> None:
        self.stage1()
        self.stage2()
        self.model.requires_grad_(True)
        meta = {
            "fingerprint": self.ctx.fingerprint(),
            "classifier": self.recipe.classifier,
            "tau": getattr(self, "tau", None),
        }
        save_weights(self.ckpt_dir / "best.safetensors", self.model, meta)
