"""The run store: every stage of a run is one folder that never changes once it is published.

``outputs/NAME/stages/<kind>-<name>-<id>/`` holds one stage's files and ``stage.json``: what the stage
was made from (its inputs), the sha256 of each of its files and their digest (the stage's content).
The id is the digest of the inputs, so a command computes the ids it needs from its config and finds
the folders; a stage made from other inputs has another id and can never be found in their place.

A stage is built in ``stages/.work/<folder>/`` under a lock of its own (two builders of one id do not
meet), and published by one rename: a build that is killed leaves nothing published, and the next
build of that id clears what it left. Readers take no lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from argse.core import storage
from argse.core.errors import ArgseError
from argse.core.records import read_model

RECORD = "stage.json"
WORK = ".work"  # folders of stages being built, and their locks
RETIRED = ".retired"  # stages replaced by --rebuild, until pruned
ID_CHARS = 16  # of the sha256 in a folder's name (64 bits)


def canonical(obj: Any) -> str:
    """One text per value: keys sorted, no spaces, no NaN (the basis of every id)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


@dataclass(frozen=True)
class Key:
    """A stage to find or build: its kind, its name within the run, and everything it is made from."""

    kind: str  # splits | expert | gate | evaluation
    name: str
    inputs: dict

    @property
    def id(self) -> str:
        return digest({"kind": self.kind, "name": self.name, "inputs": self.inputs})

    @property
    def folder(self) -> str:
        label = self.kind if self.name == self.kind else f"{self.kind}-{self.name}"
        return f"{label}-{self.id[:ID_CHARS]}"


class StageRecord(BaseModel):
    """``stage.json``: what the folder holds and what it was made from (``argse.stage/1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["argse.stage/1"] = "argse.stage/1"
    kind: str
    name: str
    id: str
    inputs: dict
    files: dict[str, str]  # file name -> sha256 of its bytes
    content: str  # digest of ``files``: what downstream stages are keyed by
    command: str  # the command that makes it
    built: str  # when (UTC, ISO 8601); not part of the id or the content


@dataclass(frozen=True)
class Stage:
    """A published stage: its folder and its record."""

    folder: Path
    record: StageRecord

    @property
    def content(self) -> str:
        return self.record.content

    @property
    def name(self) -> str:
        return self.record.name

    def file(self, name: str) -> Path:
        return self.folder / name


def read_record(folder: Path) -> StageRecord:
    """``folder/stage.json`` validated in one call; a bad file is one sentence naming it and the field."""
    fix = "the folder was changed by hand: remove it (python -m argse.stages prune) and make it again"
    return read_model(folder / RECORD, StageRecord, "stage record", fix)


class Store:
    """The stages of one run, under ``out_dir/stages``; ``ckpt_dir`` holds training state by stage folder."""

    def __init__(self, out_dir: Path, ckpt_dir: Path) -> None:
        self.out, self.ckpt = Path(out_dir), Path(ckpt_dir)
        self.root = self.out / "stages"

    # ---------------------------------------------------------------- finding
    def find(self, key: Key) -> Stage | None:
        """The published stage of ``key``, or None. Its record must name the same id (a folder renamed by hand
        is refused), and each file it lists must be there with its size; bytes are checked by :meth:`verify`."""
        folder = self.root / key.folder
        if not (folder / RECORD).is_file():
            return None
        record = read_record(folder)
        if record.id != key.id:
            raise ArgseError(
                f"{folder} holds stage {record.id[:ID_CHARS]}, not {key.id[:ID_CHARS]} as its name says; it was "
                f"renamed or copied by hand: remove it (python -m argse.stages prune) and make it again"
            )
        for name in record.files:
            if not (folder / name).is_file():
                raise ArgseError(f"{folder / name} is missing from its published stage; {self.fix(record)}")
        return Stage(folder, record)

    def require(self, key: Key, what: str, command: str) -> Stage:
        """The stage of ``key``, or one sentence that names what is missing and the command that makes it."""
        stage = self.find(key)
        if stage is None:
            raise ArgseError(f"this config has no {what} yet (no {self.root / key.folder}); make it with {command}")
        return stage

    def verify(self, stage: Stage, names: list[str] | None = None) -> None:
        """Each of the stage's files ``names`` (default: all) still has the bytes it was published with (a name the
        stage does not record is left to its reader, which says it is missing)."""
        for name in names if names is not None else list(stage.record.files):
            if name not in stage.record.files:
                continue
            path = stage.folder / name
            if not path.is_file() or storage.file_sha256(path) != stage.record.files.get(name):
                raise ArgseError(
                    f"{path} is not the file its stage was published with (changed by hand); {self.fix(stage.record)}"
                )

    def fix(self, record: StageRecord) -> str:
        return f"remove {self.root / Key(record.kind, record.name, record.inputs).folder} and rerun {record.command}"

    def stages(self) -> list[Stage]:
        """Every published stage of the run, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not (folder / RECORD).is_file():
                continue
            try:
                found.append(Stage(folder, read_record(folder)))
            except ArgseError:
                continue  # listed as unreadable by the caller
        return sorted(found, key=lambda s: s.record.built)

    # ---------------------------------------------------------------- building
    def work_folder(self, key: Key) -> Path:
        return self.root / WORK / key.folder

    def training_folder(self, key: Key) -> Path:
        """Where a trained stage keeps its training state (resumed by the next build of the same id)."""
        return self.ckpt / key.folder

    @contextlib.contextmanager
    def building(self, key: Key) -> Iterator[Path]:
        """Hold the build lock of ``key`` and give an empty work folder; a folder left by a killed build of the
        same id is cleared first. The work folder is removed when the body fails."""
        storage.make_dir(self.root / WORK)
        with build_lock(self.root / WORK / f"{key.folder}.lock", key.folder):
            work = self.work_folder(key)
            shutil.rmtree(work, ignore_errors=True)
            storage.make_dir(work)
            try:
                yield work
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise

    def publish(self, key: Key, work: Path, command: str) -> Stage:
        """Record the work folder's files in stage.json and rename it into place (one rename). A stage published
        before under the same id (``--rebuild``) is moved to ``stages/.retired/`` first."""
        files = {p.name: storage.file_sha256(p) for p in sorted(work.iterdir()) if p.is_file() and p.name != RECORD}
        record = StageRecord(
            kind=key.kind, name=key.name, id=key.id, inputs=key.inputs, files=files, content=digest(files),
            command=command, built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )  # fmt: skip
        storage.write_text(work / RECORD, record.model_dump_json(indent=2) + "\n")
        final = self.root / key.folder
        if final.exists():
            retired = storage.make_dir(self.root / RETIRED) / f"{key.folder}-{time.time_ns()}"
            os.rename(final, retired)
        os.rename(work, final)
        return Stage(final, record)

    # ---------------------------------------------------------------- readable names
    def link(self, name: str | Path, target: Stage | Path) -> Path:
        """``out_dir/name`` becomes a relative link to a stage's folder (or to a file in one), replaced in one
        rename, so people browse ``outputs/NAME/logits/ce/`` and a moved run keeps its links."""
        target = target.folder if isinstance(target, Stage) else Path(target)
        path = self.out / name
        storage.make_dir(path.parent)
        if path.exists() and not path.is_symlink():
            raise ArgseError(
                f"{path} is not a link to a stage (a run of an older argse, or a copy that followed links: copy runs "
                f"with cp -a); move it away, import the older run (python -m argse.stages import) or use another run "
                f"name (--set name=...)"
            )
        tmp = path.parent / f".{path.name}.{os.getpid()}.link"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(os.path.relpath(target, path.parent), tmp)
        os.replace(tmp, path)
        return path


@contextlib.contextmanager
def build_lock(path: Path, what: str) -> Iterator[None]:
    """An exclusive flock on ``path`` while a stage is built; another holder is one sentence naming its pid.
    The kernel drops the lock when the process ends, even by kill -9, so a killed build never blocks."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if exc.errno in storage.FS_ERRORS:
            raise storage.fs_error(path, exc.errno) from None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise ArgseError(
                f"stage {what} is being built by {holder}; wait for it to finish (the same command then finds it)"
            ) from None
        mine = f"pid {os.getpid()}".encode()
        os.pwrite(fd, mine, 0)  # then cut what a longer pid left: the file is never empty while it is held
        os.ftruncate(fd, len(mine))
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """The pid the holder of a build lock wrote; it writes it just after it takes the lock, so an empty file is
    read again for a moment before the answer is "another process"."""
    for _ in range(20):
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "another process"


def disk_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed)."""
    if not path.exists():
        return 0
    total = 0
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def remove(path: Path) -> None:
    """Remove a stage folder, a link or a file; missing is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        try:
            shutil.rmtree(path)
        except OSError as exc:
            if exc.errno in storage.FS_ERRORS or exc.errno == errno.ENOTEMPTY:
                raise storage.fs_error(path, exc.errno) from None
            raise
