"""Where argse's training loop spends time beyond a bare training step, on the same tensors (CPU).

    python -m benchmarks.train_overhead [--steps 8] [--repeats 3] [--compile] [--fp32]

Prints, per image, a bare channels_last step (forward, loss, backward, SGD) on normalised tensors,
the same with argse's on-device crop/flip/normalise, argse's ``train_epoch`` alone and a whole
one-epoch ``fit`` (the ``python -m benchmarks --only train`` row: validation stub, checkpoints);
then the per-call cost of each per-step extra of the loop; with ``--compile`` also the step under
torch.compile (inductor), compile time separate. Medians of ``--repeats``, the rows timed in turns after a warm-up.
Every row runs in the runtime's default precision (bf16 autocast on a CPU with bf16 instructions),
or in fp32 with ``--fp32``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from argse.config.sections import RuntimeConfig
from argse.core import distributed
from argse.training import CropFlip, Normalize, TensorBatches, TrainRecipe, TrainTask, autocast, fit, make_progress
from argse.training.loop import FitRun
from argse.training.models import CifarResNet

MEAN, STD, BATCH = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), 128
CPU = torch.device("cpu")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return CifarResNet(10).to(memory_format=torch.channels_last).train()


def _sgd(model) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)


def bare_steps(images, labels, runtime: RuntimeConfig, augment: bool, step_fn=None) -> Callable[[], None]:
    """A bare loop over ``images`` in batches: optionally argse's crop/flip/normalise, then one step each."""
    model, norm = _model(), Normalize(MEAN, STD, CPU, channels_last=True)
    opt, gen = _sgd(model), torch.Generator().manual_seed(0)
    ready = norm(images)

    def step(x, y):
        with autocast(CPU, runtime):
            out = model(x).float()
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step_fn = step_fn(step) if step_fn else step

    def run() -> None:
        for s in range(0, len(images), BATCH):
            x = norm(images[s : s + BATCH], CropFlip.draw(BATCH, gen)) if augment else ready[s : s + BATCH]
            step_fn(x, labels[s : s + BATCH])

    return run


def _task(images, labels) -> TrainTask:
    norm = Normalize(MEAN, STD, CPU, channels_last=True)
    return TrainTask("bench", _model(), TensorBatches(images, labels, norm), F.cross_entropy, lambda: {}, 10)


def argse_train_epoch(images, labels, runtime: RuntimeConfig) -> Callable[[], None]:
    """argse's ``train_epoch`` alone (scheduler, divergence tracking, progress callback)."""
    run = FitRun(
        _task(images, labels), TrainRecipe(epochs=1, warmup_epochs=0, milestones=[]), Path("-"), 0, CPU, runtime, False
    )
    return lambda: run.train_epoch(0, run.task.network, lambda: None)


def argse_fit(images, labels, runtime: RuntimeConfig) -> Callable[[], None]:
    """One epoch of ``fit`` as the benchmark row runs it: a new model, training, checkpoint, best reload."""

    def run() -> None:
        task = _task(images, labels)
        task.evaluate = lambda: {"balanced_acc": 0.0}
        with tempfile.TemporaryDirectory() as d:
            fit(
                task,
                TrainRecipe(epochs=1, warmup_epochs=0, milestones=[]),
                Path(d),
                seed=0,
                resume=False,
                device=CPU,
                runtime=runtime,
            )

    return run


def interleaved_medians(rows: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each row, timed in turns (A B C, A B C, ...) so a busy machine slows all alike."""
    for fn in rows.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeats):
        for name, fn in rows.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def per_call_us(fn, calls: int = 2000) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return 1e6 * (time.perf_counter() - start) / calls


def loop_extras() -> dict[str, float]:
    """Microseconds per call of what argse's loop adds to each step."""
    model = _model()
    opt = _sgd(model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    opt.step()  # no gradients: updates nothing, but the scheduler stops warning about the call order
    loss, first_bad, loss_sum = torch.tensor(2.3), torch.full((), -1), torch.zeros(())
    with make_progress(False) as progress:
        bar = progress.add_task("x", total=10**9, info="")

        def track():
            nonlocal first_bad, loss_sum
            first_bad = torch.where(~loss.isfinite() & (first_bad < 0), 3, first_bad)
            loss_sum += loss

        return {
            "LambdaLR.step": per_call_us(sched.step),
            "distributed.scaled_loss": per_call_us(lambda: distributed.scaled_loss(loss, loss, 128, 128)),
            "progress.advance (disabled bar)": per_call_us(lambda: progress.advance(bar)),
            "divergence tracking (where + add)": per_call_us(track),
            "CropFlip.draw": per_call_us(lambda: CropFlip.draw(BATCH, torch.Generator().manual_seed(0)), 200),
        }


def compiled_steps(images, labels, runtime: RuntimeConfig) -> tuple[Callable[[], None], float]:
    """The bare step + augment under torch.compile (inductor), and the seconds of its first (compiling) epoch."""
    run = bare_steps(images, labels, runtime, augment=True, step_fn=torch.compile)
    start = time.perf_counter()
    run()
    return run, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time the step under torch.compile (slow)")
    p.add_argument("--fp32", action="store_true", help="every row in fp32 (runtime.bf16=false)")
    args = p.parse_args(argv)
    runtime = RuntimeConfig(device="cpu", progress=False, bf16=not args.fp32)
    n = args.steps * BATCH
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    rows = {
        "bare step, normalised tensors": bare_steps(images, labels, runtime, augment=False),
        "bare step + argse crop/flip/normalise": bare_steps(images, labels, runtime, augment=True),
        "argse train_epoch": argse_train_epoch(images, labels, runtime),
        "argse fit, one epoch (benchmark row)": argse_fit(images, labels, runtime),
    }
    with autocast(CPU, runtime):
        precision = "bf16 autocast" if torch.is_autocast_enabled("cpu") else "fp32"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {n} images, batch {BATCH}, {precision}")
    if args.compile:
        rows["torch.compile(step) + argse crop/flip"], first = compiled_steps(images, labels, runtime)
        print(f"torch.compile (inductor): first epoch {first:.1f} s, compile included")
    times = interleaved_medians(rows, args.repeats)
    base = times["bare step, normalised tensors"]
    for name, t in times.items():
        print(f"{name:40s} {n / t:7.1f} img/s  {1000 * t / args.steps:7.1f} ms/step  {t / base:5.3f}x bare")
    for name, us in loop_extras().items():
        print(f"  per step: {name:36s} {us:9.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
