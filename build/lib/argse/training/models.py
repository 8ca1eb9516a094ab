"""Classifiers as a ``backbone`` giving features, then ``dropout`` and a linear ``fc``.

``resnet_cifar``: the CIFAR ResNet of He et al. 2016 (option-A shortcuts, ResNet-32 by
default); ``resnet50`` and ``resnext50_32x4d``: torchvision's ImageNet networks, untrained.
Experts see the same three parts whatever the architecture. ``prepare_model`` builds one ready
to train on this run's device (seeded, sync-BN under torchrun, channels_last, compiled).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from argse.config.sections import ModelConfig, RunConfig
from argse.core import distributed, seeds


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x
        if self.stride != 1 or self.pad:
            # Option A: parameter-free subsampling and zero-padded channels, as in the CIFAR-LT literature.
            shortcut = F.pad(
                x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2)
            )
        return F.relu(out + shortcut)


class SeededDropout(nn.Dropout):
    """``nn.Dropout`` whose masks come from ``generator`` when one is attached (training does).

    The process-wide generator of ``nn.Dropout`` would be shared by experts trained side by side in
    one process (``--team``); an expert's own stream keeps its masks, and so its weights, the same
    whatever trains beside it.
    """

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.generator is None:
            return super().forward(x)
        keep = torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator)
        return x * keep / (1 - self.p)


def attach_dropout_generator(module: nn.Module, generator: torch.Generator) -> None:
    """Let every SeededDropout of ``module`` draw its masks from ``generator``."""
    for m in module.modules():
        if isinstance(m, SeededDropout):
            m.generator = generator


class BackboneClassifier(nn.Module):
    backbone: nn.Module
    dropout: SeededDropout
    fc: nn.Linear
    feature_dim: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.backbone(x)))


class CifarResNet(BackboneClassifier):
    def __init__(self, num_classes: int, depth: int = 32, width: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        n = (depth - 2) // 6
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                layers.append(BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.backbone = nn.Sequential(*layers)
        self.feature_dim = c_in
        self.dropout = SeededDropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)


class TorchvisionNet(BackboneClassifier):
    """A torchvision ImageNet architecture (random init) with its ``fc`` split off."""

    def __init__(self, arch: str, num_classes: int, dropout: float = 0.0, zero_init_residual: bool = True) -> None:
        from torchvision import models

        super().__init__()
        self.backbone = models.get_model(arch, weights=None, zero_init_residual=zero_init_residual)
        self.feature_dim = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        self.dropout = SeededDropout(dropout)
        self.fc = nn.Linear(self.feature_dim, num_classes)


def build_model(cfg: ModelConfig, num_classes: int, dropout: float = 0.0) -> BackboneClassifier:
    if cfg.arch == "resnet_cifar":
        return CifarResNet(num_classes, cfg.depth, cfg.width, dropout)
    return TorchvisionNet(cfg.arch, num_classes, dropout, cfg.zero_init_residual)


def prepare_model(
    cfg: RunConfig, num_classes: int, dropout: float, device: torch.device, seed: int | None = None
) -> nn.Module:
    """``build_model`` as the run trains it: same initial weights per seed, on ``device``, in the runtime's layout.

    ``seed`` is the base seed of the initial weights (an expert's own); default: the run seed.
    """
    base = cfg.seed if seed is None else seed
    with seeds.global_stream(base, "init"):  # the same initial weights every time for this seed
        model = build_model(cfg.model, num_classes, dropout)
    if cfg.runtime.sync_bn:
        model = distributed.sync_batchnorm(model, device)
    memory_format = torch.channels_last if cfg.runtime.channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory_format)
    if cfg.runtime.compile:
        model.compile()
    return model
