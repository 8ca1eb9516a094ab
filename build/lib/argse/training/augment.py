"""On-device augmentation and normalisation of uint8 image batches (no per-sample PIL work)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

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
