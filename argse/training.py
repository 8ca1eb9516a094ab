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
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from argse import distributed, seeds, storage
from argse.config import RuntimeConfig
from argse.data import Images
from argse.errors import ArgseError
from argse.listfile import ImageList

CHECKPOINT_FORMAT = "argse.checkpoint/1"


@dataclass
class TrainRecipe:
    """One optimisation schedule (defaults: Cao et al. 2019, CIFAR-LT ResNet-32)."""

    epochs: int = 200
    batch_size: int = 128
    """The global batch: under torchrun each of N ranks takes batch_size / N of it."""
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    warmup_epochs: int = 5
    """Linear warm-up from lr/steps to lr over this many epochs."""
    schedule: Literal["multistep", "cosine"] = "multistep"
    """After warm-up: multistep (x gamma at each milestone) or cosine decay to 0 (per step)."""
    milestones: list[int] = field(default_factory=lambda: [160, 180])
    gamma: float = 0.01
    """multistep: multiply the lr by gamma at each milestone epoch."""
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
    """This process's device; under torchrun this also joins the job (one device per rank)."""
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    return distributed.init(runtime.device, runtime.dist_timeout_s)


def autocast(device: torch.device, runtime: RuntimeConfig):
    if device.type == "cuda" and runtime.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


PAD = 4
"""Random-crop padding of the CIFAR recipe."""


@dataclass
class CropFlip:
    """Random-crop offsets and flips for a batch: drawn for the global batch, then sharded by rank."""

    oy: torch.Tensor  # [B, 1]
    ox: torch.Tensor  # [B, 1]
    flip: torch.Tensor  # [B, 1] bool

    @classmethod
    def draw(cls, b: int, generator: torch.Generator) -> CropFlip:
        dev = generator.device
        oy = torch.randint(0, 2 * PAD + 1, (b, 1), device=dev, generator=generator)
        ox = torch.randint(0, 2 * PAD + 1, (b, 1), device=dev, generator=generator)
        return cls(oy, ox, torch.rand(b, 1, device=dev, generator=generator) < 0.5)

    def take(self, rows: slice) -> CropFlip:
        return CropFlip(self.oy[rows], self.ox[rows], self.flip[rows])

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """RandomCrop(size, padding=PAD) + RandomHorizontalFlip of a batch as one gather on the device."""
        b, _, h, w = x.shape
        dev = x.device
        padded = F.pad(x, (PAD, PAD, PAD, PAD))
        rows = self.oy + torch.arange(h, device=dev)
        cols = self.ox + torch.arange(w, device=dev)
        cols = torch.where(self.flip, cols.flip(1), cols)
        batch = torch.arange(b, device=dev).view(b, 1, 1)
        # Advanced indexing puts the indexed dims first: [B, H, W, C]; permuting back yields NHWC strides.
        return padded.permute(0, 2, 3, 1)[batch, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)


class Normalize:
    """uint8 [B, 3, H, W] -> normalised float, optionally after a random crop and flip."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor, crops: CropFlip | None = None) -> torch.Tensor:
        if crops is not None:
            x = crops.apply(x)
        x = (x.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)


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
    module: Callable[[torch.Tensor], torch.Tensor],
    images: Images,
    normalize: Callable[[torch.Tensor, CropFlip | None], torch.Tensor],
    device: torch.device,
    runtime: RuntimeConfig,
    augment: torch.Generator | None = None,
) -> torch.Tensor:
    """Outputs (float32, CPU) of ``module`` over every image, in order, in large batches.

    Under torchrun each rank runs its contiguous shard and the rows are gathered back in sample
    order, so every rank returns the same tensor. ``augment`` draws one random view per image.
    """
    n = len(images)
    rows = distributed.shard(n)
    keep = rows.stop - rows.start
    if not keep:  # fewer samples than ranks: run one anyway, so the gather knows the output shape
        rows = slice(0, 1)
    outs = []
    for x in eval_batches(images, rows, normalize, device, runtime, augment):
        with autocast(device, runtime):
            outs.append(module(x).float())
    return distributed.gather_rows(torch.cat(outs)[:keep], n).cpu()


def eval_batches(images: Images, rows: slice, normalize, device, runtime: RuntimeConfig, augment):
    """Model-ready batches of ``images[rows]`` in order (augmented views when ``augment`` is given)."""
    bs = runtime.eval_batch_size
    if isinstance(images, torch.Tensor):
        crops = CropFlip.draw(len(images), augment) if augment is not None else None
        for start in range(rows.start, rows.stop, bs):
            part = slice(start, min(start + bs, rows.stop))
            yield normalize(images[part].to(device, non_blocking=True), crops.take(part) if crops else None)
        return
    batches = [list(range(i, min(i + bs, rows.stop))) for i in range(rows.start, rows.stop, bs)]
    for x, _ in _loader(images.augmented(augment is not None), batches, runtime, device, _seed_from(augment)):
        yield normalize(x.to(device, non_blocking=True))


def _seed_from(generator: torch.Generator | None) -> int:
    if generator is None:
        return 0
    return int(torch.randint(2**62, (1,), generator=generator, device=generator.device))


def _loader(dataset, batches: list[list[int]], runtime: RuntimeConfig, device: torch.device, seed: int):
    """A DataLoader over fixed batches; worker errors become the worker's own one-line message."""
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=runtime.workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
        prefetch_factor=4 if runtime.workers else None,
    )
    try:
        yield from loader
    except ArgseError as exc:
        # DataLoader re-raises a worker's exception with the worker traceback in the message.
        raise ArgseError(re.split(r"ArgseError: ", str(exc))[-1].strip()) from None


@dataclass
class TensorBatches:
    """Training inputs held on the device: uint8 images (cropped and flipped there) or cached features."""

    inputs: torch.Tensor
    labels_device: torch.Tensor
    prepare: Callable[[torch.Tensor, CropFlip | None], torch.Tensor]

    @property
    def labels(self) -> torch.Tensor:
        return self.labels_device.cpu()

    def batches(self, order: torch.Tensor, batch_size: int, augment: torch.Generator | None):
        """(x, y, global batch size) of this rank's shard of each global batch of ``order``."""
        order = order.to(self.inputs.device)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            # Crops are drawn for the whole global batch so N ranks see what one process would.
            crops = CropFlip.draw(len(idx), augment) if augment is not None else None
            rows = distributed.shard(len(idx))
            local = idx[rows]
            yield (
                self.prepare(self.inputs[local], crops.take(rows) if crops else None),
                self.labels_device[local],
                len(idx),
            )


@dataclass
class LoaderBatches:
    """Training images decoded and augmented in DataLoader workers (list_lt), normalised on the device."""

    images: ImageList
    normalize: Normalize
    device: torch.device
    runtime: RuntimeConfig

    @property
    def labels(self) -> torch.Tensor:
        return self.images.labels

    def batches(self, order: torch.Tensor, batch_size: int, augment: torch.Generator | None):
        steps = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        local = [idx[distributed.shard(len(idx))].tolist() for idx in steps]
        if any(not b for b in local):
            raise ArgseError(
                f"the last batch of an epoch has fewer images than ranks; change the batch size ({batch_size})"
            )
        dataset = self.images.augmented(augment is not None)
        for (x, y), idx in zip(
            _loader(dataset, local, self.runtime, self.device, _seed_from(augment)), steps, strict=True
        ):
            yield self.normalize(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True), len(idx)


def lr_factor(step: int, steps_per_epoch: int, recipe: TrainRecipe) -> float:
    warm = recipe.warmup_epochs * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    if recipe.schedule == "cosine":
        total = recipe.epochs * steps_per_epoch
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))
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
    storage.save_tensors(
        path,
        {f"model.{k}": v for k, v in module.state_dict().items()},
        {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta)},
    )


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, metadata = storage.load_tensors(path, "checkpoint")
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ArgseError(f"checkpoint {path} is not an argse checkpoint (format {metadata.get('format')!r})")
    return tensors, json.loads(metadata["meta"])


def _check_resumable(path: Path, tensors: dict, meta: dict, keys: list[str], rng: list[str]) -> None:
    """A weights-only file (e.g. best.safetensors copied over last.safetensors) cannot be resumed."""
    missing = [k for k in keys if k not in meta] + [k for k in ["rng.torch", *rng] if k not in tensors]
    if missing:
        raise ArgseError(
            f"checkpoint {path} holds weights only, not the training state --resume needs (it lacks "
            f"'{missing[0]}'; best.safetensors is such a file); restore the original last.safetensors "
            f"or rerun without --resume"
        )


# ---------------------------------------------------------------- the loop


@dataclass
class TrainTask:
    """What one call of :func:`fit` trains. Experts differ only in these pieces."""

    name: str
    network: nn.Module
    """What a training step calls (wrapped in DistributedDataParallel under torchrun)."""
    module: nn.Module
    """Everything checkpointed (the whole model, or just a classifier)."""
    params: list[nn.Parameter]
    """What the optimiser updates."""
    data: TensorBatches | LoaderBatches
    """The training set: its labels (for the sampler) and its batches, model-ready on the device."""
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    evaluate: Callable[[], dict[str, float]]
    """Validation metrics after each epoch; the best epoch has the highest 'balanced_acc'."""
    train_mode: Callable[[], None]
    """Put modules in the mode they train in (e.g. a frozen backbone stays in eval)."""
    num_classes: int
    fingerprint: dict = field(default_factory=dict)
    """What the checkpoint must match to be resumed or reused (recipe, data digest, model)."""
    epoch_size: int | None = None
    """Draws per epoch; default: one per training sample."""


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
    labels = task.data.labels
    draws = task.epoch_size or len(labels)
    steps = -(-draws // recipe.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, recipe))
    gens = {"sampler": seeds.generator(seed, "sampler"), "augment": seeds.generator(seed, "augment", device)}
    torch.manual_seed(seeds.seed(seed, "torch"))
    state = {"epoch": 0, "best": None, "history": [], "fingerprint": task.fingerprint, "recipe": asdict(recipe)}

    if resume and last_path.is_file():
        tensors, meta = load_checkpoint(last_path)
        _check_resumable(last_path, tensors, meta, [*state, "optim", "scheduler"], [f"rng.{n}" for n in gens])
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

    network = task.network
    if distributed.is_distributed():
        # Built after a resume has loaded the weights; DDP averages gradients over ranks.
        network = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    with make_progress(runtime.progress and storage.is_writer()) as progress:
        bar = progress.add_task(task.name, total=recipe.epochs * steps, completed=state["epoch"] * steps, info="")
        for epoch in range(state["epoch"], recipe.epochs):
            start = time.perf_counter()
            task.train_mode()
            # Every rank draws the same global order; each trains on its shard of every batch.
            order = epoch_order(labels, recipe.sampler, gens["sampler"], task.num_classes, draws)
            loss_sum = torch.zeros((), device=device)
            first_bad = torch.full((), -1, device=device)
            aug = gens["augment"] if recipe.augment else None
            for step, (x, y, n) in enumerate(task.data.batches(order, recipe.batch_size, aug)):
                with autocast(device, runtime):
                    out = network(x).float()
                loss = distributed.scaled_loss(task.loss_fn(out, y), out, len(y), n)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss = loss.detach()
                # Track divergence on the device: no host synchronisation inside the epoch.
                first_bad = torch.where(~loss.isfinite() & (first_bad < 0), step, first_bad)
                loss_sum += loss
                progress.advance(bar)
            first_bad = distributed.all_max(first_bad)
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
            train_seconds = time.perf_counter() - start  # int(first_bad) above waited for the device
            val = task.evaluate()
            record = {
                "epoch": epoch + 1,
                "lr": opt.param_groups[0]["lr"],
                "train_loss": float(distributed.all_sum(loss_sum)) / distributed.world_size() / steps,
                "train_seconds": round(train_seconds, 3),
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
            storage.save_tensors(last_path, tensors, {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta)})
            storage.write_text(ckpt_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))
            progress.update(
                bar, info=f"epoch {epoch + 1} loss {record['train_loss']:.3f} val bal-acc {val['balanced_acc']:.3f}"
            )

    distributed.barrier()  # rank 0 has written best.safetensors
    tensors, _ = load_checkpoint(best_path)
    load_module_weights(task.module, tensors, best_path)
    return state["best"]
