"""The training core shared by every expert.

Images live on the training device as one uint8 tensor; each batch is cropped, flipped and
normalised there (no per-sample PIL work). Optimisation is SGD with momentum, linear warm-up
and multi-step decay. Every epoch ends with a validation pass, an atomic checkpoint with the
full optimiser and RNG state (so ``--resume`` reproduces an uninterrupted run exactly on CPU),
and a best-by-validation copy of the weights. Metrics stay on the device inside an epoch.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from argse import io
from argse.config import RuntimeConfig
from argse.errors import ArgseError

CHECKPOINT_FORMAT = "argse.checkpoint/1"


@dataclass
class TrainRecipe:
    """One optimisation schedule (defaults: Cao et al. 2019, CIFAR-LT ResNet-32)."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    warmup_epochs: int = 5
    """Linear warm-up from lr/steps to lr over this many epochs."""
    milestones: list[int] = field(default_factory=lambda: [160, 180])
    gamma: float = 0.01
    """Multiply the lr by gamma at each milestone epoch."""
    sampler: Literal["instance", "balanced"] = "instance"
    """instance: a shuffled pass over the data; balanced: every class equally likely per draw."""
    augment: bool = True
    """Random crop (padding 4) and horizontal flip."""
    dropout: float = 0.0
    """Dropout before the classifier."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if sorted(self.milestones) != self.milestones:
            raise ValueError(f"milestones must be increasing, got {self.milestones}")


# ---------------------------------------------------------------- device and batches


def resolve_device(runtime: RuntimeConfig) -> torch.device:
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    if runtime.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(runtime.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArgseError(f"runtime.device is '{runtime.device}' but CUDA is not available; use runtime.device=cpu")
    return device


def autocast(device: torch.device, runtime: RuntimeConfig):
    if device.type == "cuda" and runtime.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Normalize:
    """uint8 [B, 3, H, W] -> normalised float, optionally with random crop (pad 4) and flip."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
        if generator is not None:
            x = random_crop_flip(x, pad, generator)
        x = (x.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Batched RandomCrop(size, padding=pad) + RandomHorizontalFlip as one gather on the device."""
    b, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b, 1), device=dev, generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b, 1), device=dev, generator=generator)
    flip = torch.rand(b, 1, device=dev, generator=generator) < 0.5
    rows = oy + torch.arange(h, device=dev)
    cols = ox + torch.arange(w, device=dev)
    cols = torch.where(flip, cols.flip(1), cols)
    batch = torch.arange(b, device=dev).view(b, 1, 1)
    # Advanced indexing puts the indexed dims first: [B, H, W, C]; permuting back yields NHWC strides.
    return padded.permute(0, 2, 3, 1)[batch, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)


def epoch_order(
    labels: torch.Tensor, sampler: str, generator: torch.Generator, num_classes: int, draws: int | None = None
) -> torch.Tensor:
    """Sample indices for one epoch: a permutation, or class-balanced draws with replacement.

    Balanced: each sample has weight 1 / n_y, so every class is equally likely per draw.
    ``draws`` defaults to the number of samples.
    """
    n = len(labels)
    draws = draws or n
    if sampler == "instance":
        return torch.randperm(n, generator=generator)[:draws]
    counts = torch.bincount(labels, minlength=num_classes).double()
    return torch.multinomial(1.0 / counts[labels], draws, replacement=True, generator=generator)


@torch.inference_mode()
def predict(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    prepare: Callable,
    device: torch.device,
    runtime: RuntimeConfig,
) -> torch.Tensor:
    """Logits (float32, CPU) of ``forward`` over ``inputs`` in large batches."""
    outs = []
    for start in range(0, len(inputs), runtime.eval_batch_size):
        x = prepare(inputs[start : start + runtime.eval_batch_size].to(device, non_blocking=True))
        with autocast(device, runtime):
            outs.append(forward(x).float())
    return torch.cat(outs).cpu()


def lr_factor(step: int, steps_per_epoch: int, recipe: TrainRecipe) -> float:
    warm = recipe.warmup_epochs * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    epoch = step // steps_per_epoch
    return recipe.gamma ** sum(epoch >= m for m in recipe.milestones)


def make_progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


# ---------------------------------------------------------------- checkpoints


def _state_tensors(module: nn.Module, opt: torch.optim.Optimizer, gens: dict[str, torch.Generator]):
    tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
    opt_state = opt.state_dict()
    plain: dict[str, dict] = {}
    for pid, entries in opt_state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    for name, g in gens.items():
        tensors[f"rng.{name}"] = g.get_state()
    return tensors, {"param_groups": opt_state["param_groups"], "plain_state": plain}


def load_module_weights(module: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        module.load_state_dict(weights)
    except RuntimeError:
        raise ArgseError(
            f"checkpoint {path} does not fit this model (different classes, depth or width); "
            f"delete it or use the matching config"
        ) from None


def save_weights(path: Path, module: nn.Module, meta: dict) -> None:
    io.save_tensors(
        path,
        {f"model.{k}": v for k, v in module.state_dict().items()},
        {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta)},
    )


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, metadata = io.load_tensors(path, "checkpoint")
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ArgseError(f"checkpoint {path} is not an argse checkpoint (format {metadata.get('format')!r})")
    return tensors, json.loads(metadata["meta"])


# ---------------------------------------------------------------- the loop


@dataclass
class TrainTask:
    """What one call of :func:`fit` trains. Experts differ only in these pieces."""

    name: str
    module: nn.Module
    """Everything checkpointed (the whole model, or just a classifier)."""
    params: list[nn.Parameter]
    """What the optimiser updates."""
    forward: Callable[[torch.Tensor], torch.Tensor]
    inputs: torch.Tensor
    """Training inputs on the device: uint8 images, or cached features."""
    labels: torch.Tensor
    prepare: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
    """Batch transform on the device: (inputs, augment generator or None) -> model input."""
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    evaluate: Callable[[], dict[str, float]]
    """Validation metrics after each epoch; the best epoch has the highest 'balanced_acc'."""
    train_mode: Callable[[], None]
    """Put modules in the mode they train in (e.g. a frozen backbone stays in eval)."""
    num_classes: int
    fingerprint: dict = field(default_factory=dict)
    """What the checkpoint must match to be resumed or reused (recipe, data digest, model)."""
    epoch_size: int | None = None
    """Draws per epoch; default: one per training input."""


def fit(
    task: TrainTask,
    recipe: TrainRecipe,
    ckpt_dir: Path,
    *,
    seed: int,
    resume: bool,
    device: torch.device,
    runtime: RuntimeConfig,
) -> dict:
    """Train ``task`` with ``recipe``; checkpoints go to ``ckpt_dir``. Returns the best val metrics."""
    last_path, best_path = ckpt_dir / "last.safetensors", ckpt_dir / "best.safetensors"
    opt = torch.optim.SGD(task.params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    draws = task.epoch_size or len(task.labels)
    steps = -(-draws // recipe.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, recipe))
    gens = {"sampler": torch.Generator().manual_seed(seed), "augment": torch.Generator(device).manual_seed(seed + 1)}
    torch.manual_seed(seed + 2)
    state = {"epoch": 0, "best": None, "history": [], "fingerprint": task.fingerprint, "recipe": asdict(recipe)}

    if resume and last_path.is_file():
        tensors, meta = load_checkpoint(last_path)
        if meta["fingerprint"] != task.fingerprint or meta["recipe"] != asdict(recipe):
            raise ArgseError(
                f"checkpoint {last_path} was made with another recipe, data or model; "
                f"rerun without --resume to start over"
            )
        load_module_weights(task.module, tensors, last_path)
        opt_state = {"param_groups": meta["optim"]["param_groups"], "state": {}}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                opt_state["state"].setdefault(int(pid), {})[name] = value
        for pid, entries in meta["optim"]["plain_state"].items():
            opt_state["state"].setdefault(int(pid), {}).update(entries)
        opt.load_state_dict(opt_state)
        sched.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        for name, g in gens.items():
            g.set_state(tensors[f"rng.{name}"])
        state = {k: meta[k] for k in state}

    labels, labels_cpu = task.labels, task.labels.cpu()
    with make_progress(runtime.progress) as progress:
        bar = progress.add_task(task.name, total=recipe.epochs * steps, completed=state["epoch"] * steps, info="")
        for epoch in range(state["epoch"], recipe.epochs):
            start = time.perf_counter()
            task.train_mode()
            order = epoch_order(labels_cpu, recipe.sampler, gens["sampler"], task.num_classes, draws).to(device)
            loss_sum = torch.zeros((), device=device)
            first_bad = torch.full((), -1, device=device)
            aug = gens["augment"] if recipe.augment else None
            for step in range(steps):
                idx = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
                x = task.prepare(task.inputs[idx], aug)
                with autocast(device, runtime):
                    loss = task.loss_fn(task.forward(x).float(), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss = loss.detach()
                # Track divergence on the device: no host synchronisation inside the epoch.
                first_bad = torch.where(~loss.isfinite() & (first_bad < 0), step, first_bad)
                loss_sum += loss
                progress.advance(bar)
            if int(first_bad) >= 0:
                kept = (
                    f"the last good checkpoint {last_path} is kept"
                    if last_path.is_file()
                    else "no checkpoint was written"
                )
                raise ArgseError(
                    f"{task.name}: the loss became NaN or infinite at epoch {epoch + 1}, step {int(first_bad) + 1}; "
                    f"{kept}; lower the learning rate and rerun (with --resume to continue)"
                )
            val = task.evaluate()
            record = {
                "epoch": epoch + 1,
                "lr": opt.param_groups[0]["lr"],
                "train_loss": float(loss_sum) / steps,
                "seconds": round(time.perf_counter() - start, 3),
                "val": val,
            }
            state["history"].append(record)
            state["epoch"] = epoch + 1
            if state["best"] is None or val["balanced_acc"] > state["best"]["val"]["balanced_acc"]:
                state["best"] = record
                save_weights(best_path, task.module, {"fingerprint": task.fingerprint, "epoch": epoch + 1, "val": val})
            tensors, optim_meta = _state_tensors(task.module, opt, gens)
            meta = state | {"optim": optim_meta, "scheduler": sched.state_dict()}
            io.save_tensors(last_path, tensors, {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta)})
            io.write_text(ckpt_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))
            progress.update(
                bar, info=f"epoch {epoch + 1} loss {record['train_loss']:.3f} val bal-acc {val['balanced_acc']:.3f}"
            )

    tensors, _ = load_checkpoint(best_path)
    load_module_weights(task.module, tensors, best_path)
    return state["best"]
