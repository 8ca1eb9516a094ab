"""The GPU section of ``python -m benchmarks``: argse's loop (eager and runtime.cuda_graphs), the PIL
DataLoader reference and the bare CUDA-graph step of the same model (the limit), side by side; then
the wall time of the whole team trained one by one, one process per expert (``--parallel``) and in
one process (``--team``) on the one GPU.

Only on CUDA; on the CPU the report says in one line that the section was skipped.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from argse.training.models import CifarResNet

BATCH = 128
TEAM = ["ce", "logit_adjust", "balanced_softmax", "decoupling", "posthoc_adjust"]
TEAM_MODES = {"one by one": [], "one process per expert (--parallel 5)": ["--parallel", "5"], "--team": ["--team"]}


def bare_graph_img_s(num_classes: int, steps: int, repeats: int, median_time) -> float:
    """Images/s of one captured step (forward, loss, backward, fused SGD; channels_last, bf16) replayed."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = CifarResNet(num_classes).to(dev, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4, fused=True)
    x = torch.randn(BATCH, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (BATCH,), device=dev)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: optimiser state, cuDNN workspaces
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()

    def run() -> None:
        for _ in range(steps):
            graph.replay()
        torch.cuda.synchronize()

    return steps * BATCH / median_time(run, repeats)


def gpu_rows(data, steps: int, repeats: int, bench) -> list[tuple]:
    """Rows of the GPU table; ``bench`` is benchmarks.__main__ (its epoch runners and median_time)."""
    dev = torch.device("cuda")
    n = steps * BATCH
    images, labels = data.train.images[:n], data.train.labels[:n]
    dataset = bench.pil_dataset(images, labels, data.mean, data.std)

    def synced(fn):
        def run() -> None:
            fn()
            torch.cuda.synchronize()

        return run

    ref = n / bench.median_time(synced(lambda: bench.reference_epoch(dataset, data.num_classes, dev, 2)), repeats)
    eager = n / bench.median_time(synced(lambda: bench.argse_epoch(images, labels, data, dev)), repeats)
    graphs = n / bench.median_time(
        synced(lambda: bench.argse_epoch(images, labels, data, dev, cuda_graphs=True)), repeats
    )
    limit = bare_graph_img_s(data.num_classes, steps, repeats, bench.median_time)
    name = torch.cuda.get_device_name()
    return [
        (
            f"{name}: argse loop, eager",
            f"{eager:.0f} img/s",
            f"{ref:.0f} img/s (PIL + DataLoader, 2 workers)",
            f"{eager / ref:.2f}x",
            f"{eager / limit:.2f}x the bare graph",
        ),
        (
            f"{name}: argse loop, runtime.cuda_graphs",
            f"{graphs:.0f} img/s",
            f"{ref:.0f} img/s (PIL + DataLoader, 2 workers)",
            f"{graphs / ref:.2f}x",
            f"{graphs / limit:.2f}x the bare graph; goal >= 4x and >= 0.7x",
        ),
        (
            f"{name}: bare CUDA-graph step (the limit, no augmentation)",
            f"{limit:.0f} img/s",
            "-",
            "-",
            "channels_last, bf16, fused SGD",
        ),
    ]


def team_seconds(sets: list[str], tmp: Path, epochs: int, flags: list[str]) -> float:
    """Wall time of ``train_experts`` for the whole team with ``epochs`` per stage (decoupling's stage 1 is ce)."""
    schedule = {"epochs": epochs, "warmup_epochs": 0, "milestones": "[]"}
    recipes = [f"recipes.{n}.{k}={v}" for n in TEAM[:3] for k, v in schedule.items()]
    recipes += [f"recipes.decoupling.stage2.{k}={v}" for k, v in schedule.items()]
    recipes += ["recipes.decoupling.stage1_from=ce", "runtime.progress=false", f"output_dir={tmp}"]
    argv = ["--experts", ",".join(TEAM)] + [a for s in [*sets, *recipes, f"checkpoint_dir={tmp}"] for a in ("--set", s)]
    start = time.perf_counter()  # the command as a user runs it, process start included
    subprocess.run([sys.executable, "-m", "argse.train_experts", *argv, *flags], check=True, capture_output=True)
    return time.perf_counter() - start


def team_rows(sets: list[str], tmp: Path, epochs: int) -> list[tuple]:
    """The team's wall time per way of training it, each against training it one by one."""
    seconds = {
        mode: team_seconds(sets, tmp / str(i), epochs, flags) for i, (mode, flags) in enumerate(TEAM_MODES.items())
    }
    base = seconds["one by one"]
    return [
        (
            f"team of {len(TEAM)} ({epochs} epochs per stage; decoupling and posthoc_adjust wait for ce): {mode}",
            f"{t:.1f} s",
            f"{base:.1f} s (one by one)",
            f"{base / t:.2f}x",
            "wall time, one GPU",
        )
        for mode, t in seconds.items()
    ]
