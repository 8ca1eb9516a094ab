"""One writer per run name: an exclusive ``flock`` on ``outputs/NAME/.lock`` for the process lifetime.

Readers (``predict``) take it shared: any number of them at once, but none while a writer holds it,
and no writer while one of them does, so no file is replaced under a process that reads it. Each
holder writes a line ``pid N (command)`` into the file, which a refused process quotes; a writer
empties the file, a reader appends (lines of readers that have ended are left out of the message).

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
READING = "reading"  # how a reader's line names it, e.g. "pid 12 (predict, reading)"
_held: dict[str, int] = {}  # real path of a lock file -> the descriptor that holds it
_shared: set[str] = set()  # those of them held shared


def lock_run(out_dir: str | Path, command: str, shared: bool = False) -> None:
    """Hold the lock of the run whose outputs are ``out_dir`` (``shared``: as a reader); a holder that
    excludes this one is one sentence naming it."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if shared and not Path(out_dir).is_dir():
        return  # nothing there to read, nor to protect; the reader's own check names what is missing
    path = lock_file(storage.make_dir(out_dir))
    key = os.path.realpath(path)
    if key in _held:  # this process holds it already (entry points called one after another)
        if key in _shared and not shared:  # a reader that now writes: take it exclusively
            _upgrade(key, path, command)
        return
    fd = None if shared else _inherited(path)
    if fd is None:
        fd = _acquire(path, command, shared)
    _held[key] = fd
    if shared:
        _shared.add(key)


def held_fd(out_dir: str | Path) -> int | None:
    """The descriptor holding the lock of ``out_dir``, for children that share it."""
    return _held.get(os.path.realpath(lock_file(out_dir)))


def release_all() -> None:
    """Drop every lock this process holds (the kernel does the same at exit)."""
    _shared.clear()
    while _held:
        os.close(_held.popitem()[1])


def _acquire(path: Path, command: str, shared: bool) -> int:
    try:
        # A reader appends its line: O_APPEND, so that two readers starting together both keep theirs.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | (os.O_APPEND if shared else 0), 0o666)
    except OSError as exc:
        if exc.errno in storage.FS_ERRORS:
            raise storage.fs_error(path, exc.errno) from None
        raise
    try:
        if shared:
            # Alone, a reader empties the file (old lines would pile up); with other readers it adds its line.
            try:
                _lock(fd, path, command, fcntl.LOCK_EX)
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # not atomic: a writer may come in between
            except (ArgseError, BlockingIOError):
                _lock(fd, path, command, fcntl.LOCK_SH)
            os.write(fd, f"pid {os.getpid()} ({command}, {READING})\n".encode())
        else:
            _lock(fd, path, command, fcntl.LOCK_EX)
            os.write(fd, f"pid {os.getpid()} ({command})\n".encode())
    except BaseException:
        os.close(fd)
        raise
    return fd


def _upgrade(key: str, path: Path, command: str) -> None:
    """Turn this process's shared lock into an exclusive one, or one sentence naming the other holders."""
    fd = _held[key]
    try:
        _lock(fd, path, command, fcntl.LOCK_EX)
    except ArgseError:
        try:  # a refused conversion has dropped the shared lock (flock(2)); take it back
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            _shared.discard(key)
            os.close(_held.pop(key))
        raise
    os.write(fd, f"pid {os.getpid()} ({command})\n".encode())
    _shared.discard(key)


def _lock(fd: int, path: Path, command: str, mode: int) -> None:
    """flock ``fd`` in ``mode`` at once, or one sentence naming the processes that hold it."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        holders = _holders(fd)
        fix = "wait for it to finish or use another run name (--set name=...)"
        if mode == fcntl.LOCK_SH:  # a reader: another run name would read another run
            fix = f"wait for it to finish, then run {command} again"
        raise ArgseError(
            f"run '{path.parent.name}' is in use by {' and '.join(holders) or 'another process'}, which "
            f"{'hold' if len(holders) > 1 else 'holds'} {path}; {fix}"
        ) from None
    if mode == fcntl.LOCK_EX:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_END)


def _holders(fd: int) -> list[str]:
    """The lines of the lock file whose process is still running (a reader's line stays after it ends)."""
    lines = os.pread(fd, 4096, 0).decode(errors="replace").splitlines()
    alive = []
    for line in dict.fromkeys(x.strip() for x in lines if x.strip()):
        try:
            os.kill(int(line.split()[1]), 0)
        except (IndexError, ValueError):
            pass
        except ProcessLookupError:
            continue
        except PermissionError:  # another user's process: running
            pass
        alive.append(line)
    return alive


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
