"""Model-ready batches on the device: for training (TensorBatches, LoaderBatches) and for prediction.

In-memory datasets live on the device as one uint8 tensor and are cropped, flipped and normalised
there; image lists (list_lt) are decoded by DataLoader workers and normalised on the device.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from argse.config.sections import RuntimeConfig
from argse.core import distributed
from argse.core.errors import ArgseError
from argse.data.list_files import ImageList
from argse.data.long_tail import Images
from argse.training.augment import CropFlip, Normalize
from argse.training.device import autocast


@torch.inference_mode()
def outputs_of(
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
        """(x, y, global batch size) of this rank's shard of each global batch of ``order``."""
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
