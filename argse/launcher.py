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
    needs = {cls.name: [n for n in cls.requires(recipe) if n != cls.name] for cls, recipe in plan}
    waiting = [cls.name for cls, _ in plan]
    running: dict[str, tuple[subprocess.Popen, str | None, Any]] = {}
    failed: dict[str, str] = {}
    logs = cfg.out_dir / "logs"
    storage.make_dir(logs)
    # The children share this process's run lock (runlock.py) instead of waiting for it.
    lock = runlock.held_fd(cfg.out_dir)
    shared = {runlock.ENV: str(lock)} if lock is not None else {}
    console.print(f"training {len(waiting)} experts in {len(free)} processes; logs in {logs}")
    while waiting or running:
        for name in list(waiting):
            blocked = [n for n in needs[name] if n in waiting or n in running]
            if any(n in failed for n in needs[name]):
                waiting.remove(name)
                failed[name] = f"not started because {', '.join(n for n in needs[name] if n in failed)} failed"
            elif not blocked and free:
                waiting.remove(name)
                slot = free.pop(0)
                env = os.environ | shared | ({"CUDA_VISIBLE_DEVICES": slot} if slot is not None else {})
                log = (logs / f"{name}.log").open("w")
                proc = subprocess.Popen(
                    child_command(args, name, threads),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    pass_fds=() if lock is None else (lock,),
                )
                running[name] = (proc, slot, log)
                console.print(f"started {name}" + (f" on GPU {slot}" if slot is not None else ""))
        if waiting and not running:
            order = ", ".join(f"{n} needs {', '.join(needs[n])}" for n in waiting)
            raise ArgseError(f"the experts wait on each other ({order}); break the cycle in their recipes")
        time.sleep(0.2)
        for name, (proc, slot, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            free.append(slot)
            if proc.returncode == 0:
                console.print(f"finished {name}")
            else:
                lines = (logs / f"{name}.log").read_text().strip().splitlines()
                failed[name] = f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"
                console.print(f"[red]failed[/] {name}")
    if failed:
        first = next(iter(failed))
        raise ArgseError(
            f"{len(failed)} of {len(plan)} experts failed; {first}: {failed[first]} "
            f"(full log: {logs / (first + '.log')}); fix it and rerun with --resume"
        )
