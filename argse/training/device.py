"""Where this process computes (its device, joining a torchrun job) and in which precision."""

from __future__ import annotations

import contextlib

import torch

from argse import distributed
from argse.config import RuntimeConfig


def resolve_device(runtime: RuntimeConfig) -> torch.device:
    """This process's device; under torchrun this also joins the job (one device per rank)."""
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    return distributed.init(runtime.device, runtime.dist_timeout_s)


def autocast(device: torch.device, runtime: RuntimeConfig, cache: bool = True):
    """bf16 autocast on CUDA when the runtime asks for it; full precision everywhere else.

    ``cache=False`` inside a CUDA-graph capture: cached weight casts would outlive the capture.
    """
    if device.type == "cuda" and runtime.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()
