"""Several experts at once: ``--parallel`` (child processes) and ``--team`` (threads of this process).

``--parallel``: each child is an ordinary ``python -m argse.train_experts --experts <name>`` that
sees one GPU (``CUDA_VISIBLE_DEVICES``) and logs to ``outputs/<run>/logs/<name>.log``.

``--team``: every expert trains in a thread of this process, on a CUDA stream of its own, over the
one copy of the training images on the device. The kernels of several experts then overlap on one
GPU instead of the GPU being time-sliced between processes; with ``runtime.cuda_graphs`` a step is
one graph replay, which releases the GIL, so the threads do not wait on each other in Python.

Either way an expert that builds on another (decoupling with ``stage1_from: ce``) starts once that
one has finished, and a failure is reported by name while the others go on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from argse.config.sections import RunConfig
from argse.core import storage
from argse.core.errors import ArgseError


def slots(requested: int) -> list[str | None]:
    """One slot per process: a GPU id to expose, or None on a CPU-only machine."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = ([g for g in visible.split(",") if g.strip()] if visible is not None else []) or [
        str(i) for i in range(torch.cuda.device_count())
    ]
    n = requested or len(gpus) or 1
    return [gpus[i % len(gpus)] if gpus else None for i in range(n)]


def child_command(args: argparse.Namespace, name: str, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "argse.train_experts", "--experts", name]
    if args.config:
        cmd += ["--config", args.config]
    for item in [*args.overrides, "runtime.progress=false", *([f"runtime.threads={threads}"] if threads else [])]:
        cmd += ["--set", item]
    return cmd + (["--rebuild"] if getattr(args, "rebuild", False) else [])


def train_in_parallel(args: argparse.Namespace, plan: list[tuple[type, Any]], cfg: RunConfig, console: Console) -> None:
    free = slots(args.parallel)
    # Without GPUs the processes share the cores instead of each taking all of them.
    threads = 0 if free[0] is not None else max(1, (os.cpu_count() or 1) // len(free))
    logs = cfg.out_dir / "logs"
    storage.make_dir(logs)
    pool = _Pool(plan, free, lambda name, slot: _Child(args, name, slot, threads, logs), console)
    console.print(f"training {len(plan)} experts in {len(free)} processes; logs in {logs}")
    pool.run()
    pool.raise_failures()


def train_as_team(plan: list[tuple[type, Any]], train_one: Callable[[type, Any], None], device, console) -> None:
    """``train_one(cls, recipe)`` for every expert of ``plan`` at once, each in a thread and on a stream of its own."""
    planned = {cls.name: (cls, recipe) for cls, recipe in plan}
    streams = dict(zip(planned, team_streams(device, len(plan)), strict=True))

    def start(name: str, slot: None) -> _Thread:
        return _Thread(name, lambda: on_stream(device, streams[name], lambda: train_one(*planned[name])))

    pool = _Pool(plan, [None] * len(plan), start, console)
    console.print(f"training {len(plan)} experts as a team in this process on {device}")
    pool.run()
    pool.raise_failures()


@contextlib.contextmanager
def shared_cores(device: torch.device, experts: int, threads: int):
    """On a CPU, give each expert's thread its share of the cores, as --parallel gives each process.

    Every thread runs its own pool of torch.get_num_threads() workers: left at all the cores, the
    pools oversubscribe them and training slows several-fold. ``threads`` (runtime.threads), if set, is kept.
    """
    before = torch.get_num_threads()
    if device.type == "cpu" and not threads:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // experts))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def team_streams(device: torch.device, n: int) -> list:
    """One CUDA stream per expert, all distinct, taken before any thread starts (None on a CPU).

    torch hands out the streams of a pool of 32 in turn; taken up front, n <= 32 of them are distinct,
    and the threads take no more (static_step.side_stream).
    """
    if device.type != "cuda":
        return [None] * n
    streams = [torch.cuda.Stream(device) for _ in range(n)]
    if len({s.cuda_stream for s in streams}) < n:
        raise ArgseError(f"--team has one CUDA stream per expert, and torch has 32 per GPU; train at most 32, not {n}")
    return streams


def on_stream(device: torch.device, stream, work: Callable[[], None]) -> None:
    """Run ``work`` on ``stream`` of ``device`` (on a CPU, as it is)."""
    if stream is None:
        work()
        return
    stream.wait_stream(torch.cuda.current_stream(device))  # the shared images were copied on the default stream
    with torch.cuda.device(device), torch.cuda.stream(stream):  # a new thread starts on GPU 0 otherwise
        work()
    stream.synchronize()


class _Pool:
    """Experts waiting, running (one worker per slot) and failed; a worker starts once its expert's needs are done.

    ``start(name, slot)`` returns a worker: a child process (--parallel) or a thread (--team).
    """

    def __init__(self, plan: list[tuple[type, Any]], free: list, start: Callable, console) -> None:
        self.free, self.start, self.console, self.total = free, start, console, len(plan)
        self.needs = {cls.name: [n for n in cls.requires(recipe) if n != cls.name] for cls, recipe in plan}
        self.waiting = [cls.name for cls, _ in plan]
        self.running: dict[str, tuple[Any, Any]] = {}
        self.failed: dict[str, str] = {}

    def run(self) -> None:
        while self.waiting or self.running:
            self.start_ready()
            if self.waiting and not self.running:
                order = ", ".join(f"{n} needs {', '.join(self.needs[n])}" for n in self.waiting)
                raise ArgseError(f"the experts wait on each other ({order}); break the cycle in their recipes")
            time.sleep(0.2)
            self.reap()

    def start_ready(self) -> None:
        """Start every waiting expert whose needs are finished, while slots are free."""
        for name in list(self.waiting):
            needs = self.needs[name]
            blocked = [n for n in needs if n in self.waiting or n in self.running]
            if any(n in self.failed for n in needs):
                self.waiting.remove(name)
                self.failed[name] = f"not started because {', '.join(n for n in needs if n in self.failed)} failed"
            elif not blocked and self.free:
                self.waiting.remove(name)
                slot = self.free.pop(0)
                self.running[name] = (self.start(name, slot), slot)
                self.console.print(f"started {name}" + (f" on GPU {slot}" if slot is not None else ""))

    def reap(self) -> None:
        """Free the slots of finished workers and keep the one-line reason of each failure."""
        for name, (worker, slot) in list(self.running.items()):
            if not worker.done():
                continue
            del self.running[name]
            self.free.append(slot)
            failure = worker.failure()
            if failure is None:
                self.console.print(f"finished {name}")
            else:
                self.failed[name] = failure
                self.console.print(f"[red]failed[/] {name}")

    def raise_failures(self) -> None:
        if self.failed:
            first = next(iter(self.failed))
            raise ArgseError(
                f"{len(self.failed)} of {self.total} experts failed; {first}: {self.failed[first]}; "
                f"fix it and rerun the same command (finished experts are found, unfinished ones continue)"
            )


class _Child:
    """One expert trained by a child process that logs to ``logs/<name>.log``."""

    def __init__(self, args, name: str, slot: str | None, threads: int, logs: Path) -> None:
        env = os.environ | ({"CUDA_VISIBLE_DEVICES": slot} if slot is not None else {})
        self.log_path = logs / f"{name}.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            child_command(args, name, threads),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def done(self) -> bool:
        return self.proc.poll() is not None

    def failure(self) -> str | None:
        self.log.close()
        if self.proc.returncode == 0:
            return None
        lines = self.log_path.read_text().strip().splitlines()
        last = lines[-1] if lines else "no output"
        return f"exit {self.proc.returncode}: {last} (full log: {self.log_path})"


class _Thread:
    """One expert trained by a thread of this process; an unexpected error keeps its traceback."""

    def __init__(self, name: str, work: Callable[[], None]) -> None:
        self.error: str | None = None
        self.thread = threading.Thread(target=self._main, args=(work,), name=f"argse-{name}", daemon=True)
        self.thread.start()

    def _main(self, work: Callable[[], None]) -> None:
        try:
            work()
        except ArgseError as exc:
            self.error = str(exc)
        except BaseException as exc:  # a bug (or a plugin's sys.exit): named in the report, traceback on stderr
            traceback.print_exc()
            self.error = f"{type(exc).__name__}: {exc} (traceback above)"

    def done(self) -> bool:
        return not self.thread.is_alive()

    def failure(self) -> str | None:
        return self.error
