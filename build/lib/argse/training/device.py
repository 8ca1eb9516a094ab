"""Where this process computes (its device, joining a torchrun job) and in which precision."""

from __future__ import annotations

import contextlib
import functools
import os
import time

import torch

from argse.config.sections import RuntimeConfig
from argse.core import distributed


def resolve_device(runtime: RuntimeConfig) -> torch.device:
    """This process's device; under torchrun this also joins the job (one device per rank). On the CPU, torch
    computes with ``runtime.threads`` threads, or (0) with as many as there are free cores (:func:`free_cores`)."""
    device = distributed.init(runtime.device, runtime.dist_timeout_s)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    elif device.type == "cpu":
        torch.set_num_threads(max(1, min(usable_cores(), round(free_cores()))))
    return device


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def free_cores(window_s: float = 0.2) -> float:
    """How many of this process's cores no other work used over ``window_s`` (Linux /proc/stat; elsewhere all).

    torch's default of one thread per core loses about 10x on cores that other processes share (each step
    waits on its slowest thread, and a descheduled thread stalls the others; docs/performance.md), so the
    default takes only the cores that are idle now."""

    def ticks() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, all

    cores = usable_cores()
    try:
        idle0, all0 = ticks()
        time.sleep(window_s)
        idle1, all1 = ticks()
    except (OSError, ValueError, IndexError):
        return float(cores)
    online = os.cpu_count() or cores
    return min(float(cores), online * (idle1 - idle0) / max(all1 - all0, 1))


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
