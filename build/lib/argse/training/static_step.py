"""A training step with fixed shapes and no host synchronisation: what ``runtime.cuda_graphs`` captures.

Each step reads its batch from the epoch's order by a step counter held on the device, draws its
crops and flips from the augment generator on the device, reads the learning rate from a device
tensor and tracks the loss sum and the first non-finite step on the device. Nothing in it depends
on a Python value that changes between steps, so one captured CUDA graph replays every step and
the LR schedule needs no recapture.

An epoch has at most two batch sizes: full batches and the remainder. Each size gets its own
graph, so no sample is dropped and no row is padded (zero-weighted padding rows would still enter
the BatchNorm batch statistics and change the result). On the CPU the same functions run eagerly:
that is how tests/test_static_step.py proves them equal to the dynamic loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from argse.config.sections import RuntimeConfig
from argse.core import distributed, seeds
from argse.core.errors import ArgseError
from argse.training.augment import CropFlip
from argse.training.batches import TensorBatches
from argse.training.device import autocast

WARMUP_STEPS = 3
"""Eager steps (on a side stream) before the full-batch graph is captured, as torch's docs advise:
they create the optimiser state and let cuDNN and cuBLAS allocate their workspaces."""


def check_cuda_graphs(device: torch.device, data) -> None:
    """Refuse ``runtime.cuda_graphs=true`` where it cannot run, in one sentence."""
    if device.type != "cuda":
        raise ArgseError(
            f"runtime.cuda_graphs=true needs a CUDA device but this run is on {device}; set runtime.cuda_graphs=false"
        )
    if distributed.is_distributed():
        raise ArgseError("runtime.cuda_graphs=true runs without torchrun for now; set runtime.cuda_graphs=false")
    if not isinstance(data, TensorBatches):
        raise ArgseError(
            "runtime.cuda_graphs=true needs the training images in memory on the device (not list_lt's "
            "DataLoader); set runtime.cuda_graphs=false"
        )


@dataclass
class EpochTensors:
    """What a step reads and writes besides the model: tensors at fixed addresses, refilled per epoch."""

    order: torch.Tensor  # [draws] int64, the epoch's sample order
    step: torch.Tensor  # () int64, the step within the epoch
    lr: torch.Tensor  # () float32, the learning rate of the next step (fused CUDA SGD reads a float)
    loss_sum: torch.Tensor  # () float32
    first_bad: torch.Tensor  # () int64, the first step with a non-finite loss, or -1

    @classmethod
    def empty(cls, draws: int, device: torch.device) -> EpochTensors:
        z = torch.zeros((), dtype=torch.int64, device=device)
        return cls(
            torch.zeros(draws, dtype=torch.int64, device=device),
            z,
            torch.zeros((), device=device),
            torch.zeros((), device=device),
            z.clone(),
        )


@contextlib.contextmanager
def tensor_lr(opt: torch.optim.Optimizer, lr: torch.Tensor):
    """Let ``opt.step`` read the learning rate from ``lr`` (the scheduler keeps its Python float)."""
    saved = [g["lr"] for g in opt.param_groups]
    for g in opt.param_groups:
        g["lr"] = lr
    try:
        yield
    finally:
        for g, value in zip(opt.param_groups, saved, strict=True):
            g["lr"] = value


class StaticStep:
    """One training step of ``size`` samples; ``body`` is what a CUDA graph captures."""

    def __init__(self, task, opt, t: EpochTensors, size: int, batch_size: int, gen, runtime, cache: bool) -> None:
        self.task, self.opt, self.t, self.size, self.gen, self.runtime = task, opt, t, size, gen, runtime
        self.batch_size = batch_size
        self.cache = cache  # autocast's weight-cast cache must be off inside a capture
        self.offsets = torch.arange(size, device=t.order.device)

    def body(self) -> None:
        t, task, data = self.t, self.task, self.task.data
        idx = t.order[t.step * self.batch_size + self.offsets]
        crops = CropFlip.draw(self.size, self.gen) if self.gen is not None else None
        x, y = data.prepare(data.inputs[idx], crops), data.labels_device[idx]
        with autocast(t.order.device, self.runtime, cache=self.cache):
            out = task.network(x).float()
        loss = task.loss_fn(out, y)
        loss.backward()
        with tensor_lr(self.opt, t.lr):
            self.opt.step()
        loss = loss.detach()
        t.first_bad.copy_(torch.where(~loss.isfinite() & (t.first_bad < 0), t.step, t.first_bad))
        t.loss_sum.add_(loss)
        t.step.add_(1)


class Replay:
    """Runs a step eagerly ``warmup`` times, then captures it once and replays the graph ever after.

    ``capture=False`` (the CPU) runs every call eagerly: the same kernels, without the graph.
    """

    def __init__(self, step: StaticStep, warmup: int, capture: bool, generators: list[torch.Generator]) -> None:
        self.step, self.warmup, self.capture = step, warmup, capture
        self.generators = generators  # the device generators the step draws from (augment, dropout)
        self.calls, self.graph = 0, None

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        self.calls += 1
        if not self.capture:
            self.step.opt.zero_grad(set_to_none=True)
            self.step.body()
        elif self.calls <= self.warmup:
            self._eager_on_side_stream()
        else:
            self.graph = self._capture()
            self.graph.replay()  # capturing records the kernels; this runs them

    def _eager_on_side_stream(self) -> None:
        side = side_stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.step.opt.zero_grad(set_to_none=True)
            self.step.body()
        torch.cuda.current_stream().wait_stream(side)

    def _capture(self) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        for gen in self.generators:
            register_generator(graph, gen)
        # Backward allocates the gradients inside the graph's pool: each replay rewrites them there.
        self.step.opt.zero_grad(set_to_none=True)
        # Experts of a --team capture from several threads: each on its thread's stream (torch's default
        # capture stream is shared), one at a time, and blind to the others' CUDA calls.
        with seeds.GLOBAL_LOCK, torch.cuda.graph(graph, stream=side_stream(), capture_error_mode="thread_local"):
            self.step.body()
        return graph

    def close(self) -> None:
        """Free the graph under the lock: freeing unregisters torch's CUDA generator, which a capture registers."""
        if self.graph is not None:
            with seeds.GLOBAL_LOCK:
                self.graph.reset()
                self.graph = None


def side_stream() -> torch.cuda.Stream:
    """Where warm-ups and captures run: a --team thread's own stream, else a new side stream.

    The default stream cannot be captured. ``torch.cuda.Stream()`` hands out the streams of a pool
    of 32 in turn, so a team thread must not take a new one: another thread may be working, or
    capturing, on the stream it would get.
    """
    current = torch.cuda.current_stream()
    return current if current != torch.cuda.default_stream() else torch.cuda.Stream()


def register_generator(graph, gen: torch.Generator) -> None:
    """Let replays advance ``gen`` (augment or dropout stream) instead of repeating the captured draws."""
    if not hasattr(graph, "register_generator_state"):
        raise ArgseError(
            f"torch {torch.__version__} cannot capture a random augmentation in a CUDA graph "
            f"(no CUDAGraph.register_generator_state); upgrade torch or set runtime.cuda_graphs=false"
        )
    graph.register_generator_state(gen)


class StaticEpochs:
    """Every epoch of a run as replays of at most two static steps (full batches, then the remainder)."""

    def __init__(
        self, task, opt, draws: int, batch_size: int, gen, runtime: RuntimeConfig, device, dropout=None
    ) -> None:
        capture = device.type == "cuda"
        self.opt, self.t = opt, EpochTensors.empty(draws, device)
        # Every device generator the step draws from (crops, dropout masks) is registered at capture.
        self.generators = [g for g in (gen, dropout) if g is not None]
        full, rest = divmod(draws, batch_size)
        self.sizes = [batch_size] * full + ([rest] if rest else [])

        def replay(size: int, warmup: int) -> Replay:
            step = StaticStep(task, opt, self.t, size, batch_size, gen, runtime, cache=not capture)
            return Replay(step, warmup, capture, self.generators)

        self.steps = {batch_size: replay(batch_size, WARMUP_STEPS)}
        if rest:
            self.steps[rest] = replay(rest, 1)  # once per epoch: captured in the second epoch

    def close(self) -> None:
        for step in self.steps.values():
            step.close()

    def epoch(self, order: torch.Tensor, sched, advance: Callable[[], None]) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over ``order``; returns (summed loss, first non-finite step or -1), on the device."""
        t = self.t
        t.order.copy_(order)
        t.step.zero_()
        t.loss_sum.zero_()
        t.first_bad.fill_(-1)
        for size in self.sizes:
            t.lr.fill_(self.opt.param_groups[0]["lr"])  # the scheduler's value for this step, queued on the device
            self.steps[size]()
            sched.step()
            advance()
        return t.loss_sum.clone(), t.first_bad.clone()
