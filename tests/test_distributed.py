"""torchrun with the gloo backend on the CPU: two processes train like one, and survive a killed rank.

Each run here is a real ``torchrun --nproc_per_node=2`` job on a tiny synthetic dataset.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from argse.config.loading import load_run_config
from argse.core import distributed
from argse.data.logits import read_logits, split_file
from argse.stages.run import RunStages
from argse.training import load_checkpoint
from tests.conftest import REPO, tiny_overrides

EPOCHS = 12
# batch 15 over 70 images: shards of 8 and 7, and a last batch of 10: uneven shards are covered.
SETTINGS = [
    f"recipes.ce.epochs={EPOCHS}",
    "recipes.ce.batch_size=15",
    "recipes.decoupling.stage1_from=ce",
    "recipes.decoupling.stage2.batch_size=15",
    "recipes.decoupling.stage2.epochs=3",
    "runtime.threads=1",
]


def launch(root: Path, procs: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable]
    if procs > 1:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    cmd += ["-m", "argse.train_experts", "--experts", "ce,decoupling"]
    for item in tiny_overrides(root) + SETTINGS:
        cmd += ["--set", item]
    cmd += extra  # last, so its --set items win
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a hung job is ended with its ranks, not left behind the test
        # torchrun starts each rank in a session of its own: the ranks are found as its children.
        for pid in _children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"{' '.join(proc.args[:8])} ... did not end in {timeout} s:\n{(out + err)[-3000:]}"
        ) from None
    return proc.returncode, out + err


def files(root: Path) -> set[str]:
    """The files under ``root``, stage ids left out: an id holds the content of the stages it builds on, and a
    network trained on two processes is close to, not bitwise, the one trained on one (decoupling's ``ce``)."""
    found = (p.relative_to(root) for p in root.rglob("*") if p.is_file() and "logs" not in p.parts)
    return {re.sub(r"-[0-9a-f]{16}(?=[/.]|$)", "-ID", str(p)) for p in found}


def stages(root: Path) -> RunStages:
    """The stages of the run that :func:`launch` trains under ``root``."""
    return RunStages(load_run_config(None, tiny_overrides(root) + SETTINGS))


def training_folder(root: Path, expert: str) -> Path:
    run = stages(root)
    return run.store.training_folder(run.expert_key(expert))


def weights(root: Path, expert: str) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(training_folder(root, expert) / "best.safetensors")
    return tensors


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process and two processes, started together (the 2-core machine runs both)."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    procs = {one: launch(one, 1), two: launch(two, 2)}
    for proc in procs.values():
        rc, output = finish(proc)
        assert rc == 0, output[-3000:]
    return one, two


def test_two_processes_train_like_one(runs):
    one, two = runs
    for expert in ("ce", "decoupling"):
        a, b = weights(one, expert), weights(two, expert)
        assert a.keys() == b.keys()
        floats = [k for k in a if a[k].is_floating_point()]
        worst = max(float((a[k] - b[k]).abs().max()) for k in floats)
        assert worst < 1e-4, f"{expert}: largest weight difference {worst}"
        assert all(torch.equal(a[k], b[k]) for k in a if not a[k].is_floating_point())


def test_exported_logits_equal_the_single_process_export(runs):
    one, two = runs
    for expert in ("ce", "decoupling"):
        for split in ("val", "tune", "test"):
            a = read_logits(split_file(stages(one).expert(expert).folder, split))
            b = read_logits(split_file(stages(two).expert(expert).folder, split))
            assert torch.equal(a.indices, b.indices) and torch.equal(a.labels, b.labels)
            assert torch.allclose(a.logits, b.logits, atol=1e-4), f"{expert}/{split}"


def test_only_one_copy_of_each_output(runs):
    one, two = runs
    assert files(two) == files(one)  # no per-rank duplicates, no stray temporary files
    assert not [p for p in files(two) if p.endswith(".tmp")]


def _children(parent: int) -> list[int]:
    """The pids of the processes whose parent is ``parent`` (none where there is no /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of a torchrun worker by its RANK (workers are children of the torchrun process)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find a rank's process")
def test_killed_rank_stops_the_run_and_the_same_command_finishes_it(runs, tmp_path):
    _, two = runs
    proc = launch(tmp_path, 2)
    # Paths are no part of a stage's id: ce trains in the folder of the same name as under `two`.
    last = tmp_path / "checkpoints" / "tiny" / training_folder(two, "ce").name / "last.safetensors"
    deadline = time.time() + 120
    while not last.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim = _rank_pid(proc.pid, 1)
    assert victim is not None and proc.poll() is None, "the run ended before a rank could be killed"
    os.kill(victim, signal.SIGKILL)
    rc, output = finish(proc)
    assert rc != 0
    assert "rerun the same command" in output, output[-3000:]
    epoch = load_checkpoint(last)[1]["epoch"]  # the last complete checkpoint is intact
    assert 1 <= epoch < EPOCHS
    assert last.parent == training_folder(tmp_path, "ce")

    rc, output = finish(launch(tmp_path, 2))
    assert rc == 0, output[-3000:]
    assert f"resumed from epoch {epoch} of {EPOCHS}" in output, output[-3000:]
    a, b = weights(two, "ce"), weights(tmp_path, "ce")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # = the uninterrupted 2-process run


LEAVES = """
import os, torch
from argse.core import distributed
distributed.init("cpu", 60)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))  # its first use imports torch._dynamo
model(torch.randn(3, 4)).sum().backward()
del model
distributed.shutdown()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
with open(f"threads-{os.environ['RANK']}.txt", "w") as f:  # each rank its own file: printed lines interleave
    f.write(" ".join(sorted(names)))
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to list a process's threads")
def test_shutdown_ends_gloo_s_threads_before_the_interpreter_exits(tmp_path):
    """A process group that outlives shutdown() keeps gloo's threads running into the interpreter's exit, where a
    rank can abort (SIGABRT) now and then: the failure the scaling benchmark met under load."""
    script = tmp_path / "leaves.py"
    script.write_text(LEAVES)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    left = {rank: (tmp_path / f"threads-{rank}.txt").read_text() for rank in (0, 1)}
    assert all("gloo" not in names for names in left.values()), left


def test_shards_cover_every_index_once_in_order(monkeypatch):
    for world in (1, 2, 3, 8):
        parts = []
        for r in range(world):
            monkeypatch.setattr(distributed, "world_size", lambda w=world: w)
            monkeypatch.setattr(distributed, "rank", lambda r=r: r)
            s = distributed.shard(10)
            parts += list(range(10))[s]
        assert parts == list(range(10))
