"""Scale-out on PyTorch's own engine: torchrun sets the environment, this module reads it.

Without torchrun (or with one process) every helper here is a no-op, so the same entry
points run unchanged on one device. Under torchrun each process owns one device (GPU
``LOCAL_RANK``, or the CPU with the gloo backend), every rank computes the same epoch plan
and takes its shard of each global batch, and only rank 0 writes (see :mod:`argse.core.storage`).
"""

from __future__ import annotations

import importlib
import os
import re
import signal
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from argse.core.errors import ArgseError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def is_distributed() -> bool:
    return world_size() > 1


def is_writer() -> bool:
    """Only rank 0 writes under torchrun; a single process always writes."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def launched() -> bool:
    """True in a process started by torchrun with more than one process in the job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def speaks_for_the_job() -> bool:
    """Whether this process should say why it failed. A torchrun rank other than 0 that has not joined the job yet
    keeps quiet: until then every rank reads the same config and files, so rank 0 says the same sentence. Once
    joined, a rank may fail alone, and then only it can say why."""
    return (dist.is_available() and dist.is_initialized()) or int(os.environ.get("RANK", "0")) == 0


def check_device(setting: str, what: str = "runtime.device") -> None:
    """ArgseError unless ``setting`` is 'auto' or a device torch can name ('cpu', 'cuda', 'cuda:1', ...)."""
    try:
        setting == "auto" or torch.device(setting)
    except (RuntimeError, ValueError, TypeError):
        raise ArgseError(f"{what} is {setting!r}, which names no device; use auto, cpu, cuda or cuda:N") from None


def init(device_setting: str, timeout_s: int, what: str = "runtime.device") -> torch.device:
    """Join the torchrun job (if any) and return this process's device (``what``: the setting, for messages).

    NCCL on CUDA (one GPU per process, chosen by LOCAL_RANK), gloo on the CPU.
    """
    check_device(device_setting, what)
    cuda = device_setting != "cpu" and torch.cuda.is_available()
    if device_setting.startswith("cuda") and not torch.cuda.is_available():
        raise ArgseError(f"{what} is '{device_setting}' but CUDA is not available; use {what}=cpu")
    if not launched():
        return torch.device(device_setting if device_setting != "auto" else ("cuda" if cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Imported before the group exists, or DDP's first use imports it (through torch._dynamo) and its
        # functions' default ``group=group.WORLD`` keep the group alive past destroy_process_group: gloo's threads
        # then run into the interpreter's exit, and a rank aborts there now and then (SIGABRT, "terminate called
        # without an active exception"). tests/test_distributed.py checks that shutdown() leaves no gloo thread.
        importlib.import_module("torch.distributed.nn.functional")
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        # torchrun stops the surviving ranks with SIGTERM when one fails: exit with a sentence.
        signal.signal(signal.SIGTERM, _stopped)
    return device


class StoppedByPeer(ArgseError):
    """This rank was stopped because another rank of the torchrun job failed: that rank says why, and rank 0 alone
    (when it is not the one that failed) says how to go on."""


def _stopped(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise StoppedByPeer(
        f"rank {rank()} was stopped because another rank of this torchrun job failed; "
        f"rerun the same command to continue from the last complete checkpoint"
    )


def shutdown() -> None:
    """Leave the torchrun job together. A rank that tore down its connections while another was still in a
    collective (rank 0 does more at the end: it reads back and prints the stages) could reset that rank's
    sockets: gloo then fails with "Connection closed by peer", more often the busier the machine."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (e.g. until rank 0 has written a file the others read)."""
    if is_distributed():
        dist.barrier()


def rank_zero_first(fn):
    """Run ``fn`` on rank 0 first (it may write a cache or a manifest), then on the other ranks."""
    if rank() != 0:
        barrier()
    out = fn()
    if rank() == 0:
        barrier()
    return out


def shard(n: int) -> slice:
    """This rank's contiguous part of ``range(n)``: sizes differ by at most one, rank order kept."""
    w, r = world_size(), rank()
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (r < extra))


def all_sum(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t)
    return t


def all_max(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def gather_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """Concatenate every rank's ``shard(n)`` rows of a result, in rank (= sample) order."""
    if not is_distributed():
        return t
    w = world_size()
    longest = -(-n // w)
    padded = t.new_zeros((longest, *t.shape[1:]))
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    sizes = [n // w + (r < n % w) for r in range(w)]
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        return all_sum(t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return all_sum(grad)


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose batch statistics span every rank, for the CPU (gloo) backend.

    torch.nn.SyncBatchNorm only runs on GPUs; this is the same computation written with a
    differentiable all-reduce of per-channel sums, so N CPU processes train as one.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        local = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), x.new_full((1,), x.numel() / x.shape[1])]).float()
        total = _AllReduceSum.apply(local)
        c = x.shape[1]
        count = total[-1]
        mean = total[:c] / count
        var = total[c : 2 * c] / count - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1).clamp(min=1), alpha=m)
        shape = (1, c, 1, 1)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (x - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Make BatchNorm statistics span all ranks, so N processes train like one process."""
    if not is_distributed():
        return model
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _swap_batchnorm(model)


def _swap_batchnorm(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine)
        new.load_state_dict(module.state_dict())
        return new.to(module.weight.device)
    for name, child in module.named_children():
        setattr(module, name, _swap_batchnorm(child))
    return module


def scaled_loss(loss: torch.Tensor, logits: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
    """This rank's share of the global-batch mean loss.

    DDP averages gradients over ranks, so each rank's mean loss is weighted by
    ``world * n_local / n_global``: uneven shards then add up to the one-process gradient.
    """
    if not is_distributed():
        return loss
    if n_local == 0:
        return logits.sum() * 0.0  # keeps the graph so the gradient all-reduce still runs
    return loss * (world_size() * n_local / n_global)


def translate_errors(exc: BaseException) -> ArgseError | None:
    """A lost peer or a broken rendezvous becomes one actionable sentence."""
    # NCCL and the store raise DistError; gloo's transport raises a plain RuntimeError.
    if isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and "gloo" in str(exc).lower()):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        cause = re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0]  # drop gloo's source location
        return ArgseError(
            f"rank {rank()} lost contact with the other ranks ({cause[:120]}); a rank died or was killed; "
            f"rerun the same command to continue from the last complete checkpoint"
        )
    return None
