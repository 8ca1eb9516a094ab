"""One process per run name: an exclusive ``flock`` on ``outputs/NAME/.lock`` for the process lifetime.

The kernel drops a flock when its process ends, even by ``kill -9``, so a killed run never blocks
the next one. Under torchrun only rank 0 takes the lock (the other ranks write nothing).
``--parallel`` children share their parent's lock: they inherit its open file (its descriptor
number is in ``ARGSE_RUN_LOCK_FD``) instead of waiting for a second one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from argse import storage
from argse.errors import ArgseError
from argse.paths import lock_file

ENV = "ARGSE_RUN_LOCK_FD"
_held: dict[str, int] = {}  # real path of a lock file -> the descriptor that holds it


def lock_run(out_dir: str | Path, command: str) -> None:
    """Hold the lock of the run whose outputs are ``out_dir``; another holder is one sentence."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    path = lock_file(storage.make_dir(out_dir))
    key = os.path.realpath(path)
    if key in _held:  # this process holds it already (entry points called one after another)
        return
    fd = _inherited(path)
    if fd is None:
        fd = _acquire(path, command)
    _held[key] = fd


def held_fd(out_dir: str | Path) -> int | None:
    """The descriptor holding the lock of ``out_dir``, for children that share it."""
    return _held.get(os.path.realpath(lock_file(out_dir)))


def release_all() -> None:
    """Drop every lock this process holds (the kernel does the same at exit)."""
    while _held:
        os.close(_held.popitem()[1])


def _acquire(path: Path, command: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if exc.errno in storage.FS_ERRORS:
            raise storage.fs_error(path, exc.errno) from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ArgseError(
            f"run '{path.parent.name}' is in use by {holder}, which holds {path}; wait for it to finish "
            f"or use another run name (--set name=...)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} ({command})\n".encode(), 0)
    return fd


def _inherited(path: Path) -> int | None:
    """The parent's descriptor of this very lock file, if it passed one down (``--parallel``)."""
    try:
        fd = int(os.environ.get(ENV, ""))
        theirs, mine = os.fstat(fd), os.stat(path)
    except (ValueError, OSError):
        return None
    if (theirs.st_dev, theirs.st_ino) != (mine.st_dev, mine.st_ino):
        return None
    try:  # succeeds at once: the parent's lock belongs to this same open file
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return None
    return fd
