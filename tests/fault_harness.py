"""What ``tests/test_faults.py`` needs to break a tiny trained run and read what an entry point printed.

A fault case runs an entry point as ``python -m`` would (in this process through ``cli.run``, or as a
real process where the operating system itself must refuse a write) and expects either success or one
``error: ...`` line with exit status 2 and no traceback.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from argse import cli, train_experts
from tests.tiny_run import REPO, TINY_RUN

# One epoch of ce and a five-epoch gate: the cases need a run that exists, not a good one.
TINY = TINY_RUN | {
    "runtime.eval_batch_size": "64",
    "recipes.ce.epochs": "1",
    "recipes.ce.batch_size": "32",
    "recipes.ce.warmup_epochs": "0",
    "recipes.ce.milestones": "[]",
    "gating.epochs": "5",
}


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def sets(folder: Path, **extra: str) -> list[str]:
    """``--set`` arguments of the tiny run with its outputs and checkpoints under ``folder``."""
    values = TINY | {"output_dir": str(folder / "outputs"), "checkpoint_dir": str(folder / "checkpoints")} | extra
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def run(main: Callable, argv: list[str]) -> Result:
    """An entry point in this process, as ``python -m`` runs it; a traceback is recorded as rc -1."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = cli.run(main, argv)
        except BaseException:  # noqa: BLE001  what a user would see as a traceback
            rc, _ = -1, err.write(traceback.format_exc())
    return Result(rc, out.getvalue(), err.getvalue())


def run_process(argv: list[str], prefix: list[str] = ()) -> Result:
    """``python argv`` as a real process (after ``prefix``, e.g. a namespace or another user)."""
    proc = subprocess.run([*prefix, sys.executable, *argv], capture_output=True, text=True, cwd=REPO, timeout=120)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def experts_process(folder: Path) -> list[str]:
    """argv of ``python -m argse.train_experts`` for ce of the tiny run under ``folder``."""
    return ["-m", "argse.train_experts", "--experts", "ce", *sets(folder)]


class Workspace:
    """A scratch folder with one tiny trained run (ce, 1 epoch) that every case copies."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "base"
        self.count = 0
        self.trained = run(train_experts.main, ["--experts", "ce", *sets(self.base)])
        if self.trained.rc != 0:
            raise RuntimeError(f"the tiny run did not train: {self.trained.text}")

    def fresh(self) -> Path:
        """A copy of the trained run; returns its folder (outputs/ and checkpoints/ inside)."""
        self.count += 1
        folder = self.root / f"case{self.count}"
        shutil.copytree(self.base, folder, symlinks=True)  # as cp -a: a run's readable names are links
        return folder


def logits(folder: Path, expert: str, split: str) -> Path:
    return folder / "outputs" / "tiny" / "logits" / expert / f"{split}.safetensors"


def tmpfs_prefix(folder: Path, mount: str) -> list[str]:
    """argv prefix: a user namespace with a tmpfs (``mount`` options) on ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o {mount} tmpfs "{folder}" && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]


@functools.cache
def has_user_namespaces() -> bool:
    probe = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def can_drop_privileges() -> bool:
    """Whether a write can be refused by permissions: as a user always, as root only through setpriv."""
    return os.geteuid() != 0 or shutil.which("setpriv") is not None


def assert_one_error(result: Result, expect: str) -> None:
    """Exit 2 with one ``error:`` line that holds ``expect``, and no traceback."""
    assert "Traceback" not in result.text, f"traceback: {result.text.strip()[-500:]}"
    lines = result.err.strip().splitlines()
    assert result.rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (
        f"expected one 'error:' line and rc 2, got rc {result.rc}: {result.err.strip()[-300:]}"
    )
    assert expect in lines[0], f"message lacks {expect!r}: {lines[0]}"


def assert_succeeded(result: Result, expect: str) -> None:
    """Exit 0, ``expect`` among what it printed, and no traceback."""
    assert result.rc == 0 and expect in result.text and "Traceback" not in result.text, (
        f"rc {result.rc}, {expect!r} not printed: {result.text.strip()[-300:]}"
    )
