"""Where this process computes (its device, joining a torchrun job) and in which precision."""

from __future__ import annotations

import contextlib
import functools

import torch

from argse.config.sections import RuntimeConfig
from argse.core import distributed


def resolve_device(runtime: RuntimeConfig) -> torch.device:
    """This process's device; under torchrun this also joins the job (one device per rank)."""
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    return distributed.init(runtime.device, runtime.dist_timeout_s)


def autocast(device: torch.device, runtime: RuntimeConfig, cache: bool = True):
    """bf16 autocast when the runtime asks for it and the device computes bf16 natively; fp32 elsewhere.

    ``cache=False`` inside a CUDA-graph capture: cached weight casts would outlive the capture.
    """
    if runtime.bf16 and native_bf16(device.type):
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


@functools.cache
def native_bf16(device_type: str) -> bool:
    """CUDA, or a CPU with bf16 instructions (AVX512-BF16 or AMX); elsewhere oneDNN emulates bf16, slower than fp32."""
    if device_type == "cuda":
        return True
    if device_type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)
