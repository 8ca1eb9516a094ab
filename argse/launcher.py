"""``--parallel``: several experts at once, one child process per GPU (for small datasets).

Each child is an ordinary ``python -m argse.train_experts --experts <name>`` that sees one
GPU (``CUDA_VISIBLE_DEVICES``) and logs to ``outputs/<run>/logs/<name>.log``. An expert that
builds on another (decoupling with ``stage1_from: ce``) starts once that one has finished.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from argse import runlock, storage
from argse.config import RunConfig
from argse.errors import ArgseError


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
    return cmd + (["--resume"] if args.resume else [])


def train_in_parallel(args: argparse.Namespace, plan: list[tuple[type, Any]], cfg: RunConfig, console: Console) -> None:
    free = slots(args.parallel)
    # Without GPUs the processes share the cores instead of each taking all of them.
    threads = 0 if free[0] is not None else max(1, (os.cpu_count() or 1) // len(free))
    logs = cfg.out_dir / "logs"
    storage.make_dir(logs)
    # The children share this process's run lock (runlock.py) instead of waiting for it.
    lock = runlock.held_fd(cfg.out_dir)
    pool = _Pool(args, free, threads, logs, lock, console)
    pool.needs = {cls.name: [n for n in cls.requires(recipe) if n != cls.name] for cls, recipe in plan}
    pool.waiting = [cls.name for cls, _ in plan]
    console.print(f"training {len(pool.waiting)} experts in {len(free)} processes; logs in {logs}")
    pool.run()
    if pool.failed:
        first = next(iter(pool.failed))
        raise ArgseError(
            f"{len(pool.failed)} of {len(plan)} experts failed; {first}: {pool.failed[first]} "
            f"(full log: {logs / (first + '.log')}); fix it and rerun with --resume"
        )


class _Pool:
    """Experts waiting, running (one child process per slot) and failed; a child starts once its needs are done."""

    def __init__(self, args, free: list[str | None], threads: int, logs: Path, lock: int | None, console) -> None:
        self.args, self.free, self.threads, self.logs, self.lock, self.console = (
            args,
            free,
            threads,
            logs,
            lock,
            console,
        )
        self.needs: dict[str, list[str]] = {}
        self.waiting: list[str] = []
        self.running: dict[str, tuple[subprocess.Popen, str | None, Any]] = {}
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
                self.start(name, self.free.pop(0))

    def start(self, name: str, slot: str | None) -> None:
        shared = {runlock.ENV: str(self.lock)} if self.lock is not None else {}
        env = os.environ | shared | ({"CUDA_VISIBLE_DEVICES": slot} if slot is not None else {})
        log = (self.logs / f"{name}.log").open("w")
        proc = subprocess.Popen(
            child_command(self.args, name, self.threads),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            pass_fds=() if self.lock is None else (self.lock,),
        )
        self.running[name] = (proc, slot, log)
        self.console.print(f"started {name}" + (f" on GPU {slot}" if slot is not None else ""))

    def reap(self) -> None:
        """Free the slots of finished children; a failure keeps the last line of its log."""
        for name, (proc, slot, log) in list(self.running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del self.running[name]
            self.free.append(slot)
            if proc.returncode == 0:
                self.console.print(f"finished {name}")
            else:
                lines = (self.logs / f"{name}.log").read_text().strip().splitlines()
                self.failed[name] = f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"
                self.console.print(f"[red]failed[/] {name}")
