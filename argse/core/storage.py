"""Every file argse writes goes through here: atomic (temp file + rename) and rank-0 only."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from argse.core.distributed import is_writer
from argse.core.errors import ArgseError

# The process umask, read once at import (reading it means setting it and restoring it).
_UMASK = os.umask(0)
os.umask(_UMASK)


# Errors of the file system the user can fix: permissions, a read-only mount, a full disk or quota.
FS_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG}


def fs_error(path: str | Path, code: int) -> ArgseError:
    """One sentence for a write that the file system refused (see FS_ERRORS)."""
    why = os.strerror(code)
    if code == errno.EFBIG:
        return ArgseError(
            f"cannot write {path}: {why} (a file-size limit of this shell or file system); files written before "
            f"are intact: raise the limit (ulimit -f) or write elsewhere, then rerun"
        )
    if code == errno.ENAMETOOLONG:
        return ArgseError(f"cannot write {path}: {why}; choose a shorter run name or output_dir")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return ArgseError(
            f"cannot write {path}: {why}; files written before are intact, free some space and rerun "
            f"(an unfinished training continues when the same command runs again)"
        )
    return ArgseError(
        f"cannot write {path}: {why}; make its folder writable or point output_dir / checkpoint_dir "
        f"(--set output_dir=...) elsewhere"
    )


def os_errno(exc: Exception) -> int | None:
    """The errno of an OSError, or of a safetensors error that reports one as '(os error N)'."""
    if isinstance(exc, OSError):
        return exc.errno
    found = re.search(r"\(os error (\d+)\)", str(exc)) if isinstance(exc, SafetensorError) else None
    return int(found.group(1)) if found else None


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: a killed run leaves the old file intact."""
    path = Path(path)
    if not is_writer():
        return path
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        if os_errno(exc) in FS_ERRORS:
            raise fs_error(path, os_errno(exc)) from None
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def make_dir(path: str | Path) -> Path:
    """``mkdir -p``; a refusal of the file system is one sentence naming the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in FS_ERRORS:
            raise fs_error(path, exc.errno) from None
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):  # a regular file where a folder on the way must be
            blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
            raise ArgseError(
                f"cannot make folder {path}: {blocker} is a regular file; move it away or point output_dir / "
                f"checkpoint_dir elsewhere"
            ) from None
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a safetensors file atomically (tensors are made contiguous and moved to the CPU), its header in one
    canonical order, so the same tensors and metadata always give the same bytes (and the same digest)."""
    if not is_writer():
        return Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        save_file(tensors, tmp, metadata=metadata)
        sort_header(tmp)

    return atomic_write(path, write)


def sort_header(path: str | Path) -> None:
    """Rewrite a safetensors file's JSON header with its keys sorted. safetensors writes the metadata map in a
    random order; sorted, the header has the same length, so it is rewritten in place (padding kept)."""
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # never seen: the same keys and values re-encoded cannot grow
            raise ValueError(f"the sorted safetensors header of {path} is longer than the original")
        f.seek(8)
        f.write(text.ljust(size))


def corrupt(path: Path, what: str, exc: Exception) -> ArgseError:
    return ArgseError(f"{what} {path} is corrupt or not a safetensors file ({exc}); delete it and re-create it")


def load_tensors(path: str | Path, what: str = "file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file and its metadata; a missing or corrupt file is an ArgseError."""
    path = Path(path)
    if not path.is_file():
        raise ArgseError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise corrupt(path, what, exc) from None


def open_tensors(
    path: str | Path, what: str, on_disk: tuple[str, ...]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """:func:`load_tensors`, except that the tensors named in ``on_disk`` are not read: each is a meta tensor
    (its dtype and shape, no data) whose rows :func:`read_rows` reads when they are needed."""
    path = Path(path)
    if not path.is_file():
        raise ArgseError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata, tensors = f.metadata() or {}, {}
            for name in f.keys():
                piece = f.get_slice(name)
                shape = piece.get_shape()
                if name in on_disk and shape:  # zero rows read: the dtype as torch names it
                    tensors[name] = torch.empty(shape, dtype=piece[:0].dtype, device="meta")
                else:
                    tensors[name] = f.get_tensor(name)
        return tensors, metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise corrupt(path, what, exc) from None


def read_rows(path: str | Path, what: str, name: str, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of tensor ``name`` of a safetensors file, reading only those rows: the file is
    opened for this block and closed after it, so its pages do not stay mapped into the process."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.get_slice(name)[start:stop]
    except (SafetensorError, OSError, ValueError) as exc:
        raise corrupt(path, what, exc) from None


MAX_TEXT_BYTES = 256 << 20  # a config, a list or a class-name file: far above any real one, far below the memory


def read_text(path: Path, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A text file a user names: a regular file (a pipe would block the reader forever) of at most ``max_bytes``,
    in UTF-8; anything else is one sentence naming the file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ArgseError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ArgseError(f"{what} {path} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArgseError(f"{what} {path} is not a regular file (a folder, pipe or device); give a file")
    if st.st_size > max_bytes:
        raise ArgseError(f"{what} {path} is {st.st_size:,} bytes, more than the {max_bytes:,} it may be")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ArgseError(
            f"{what} {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            f"save it as UTF-8"
        ) from None


def text_lines(text: str) -> list[str]:
    """The lines of a file's text, split at newlines only (``str.splitlines`` also splits at U+0085, U+2028 and
    others, which a class or file name may hold); a Windows line end counts as one."""
    return text.replace("\r\n", "\n").split("\n")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks (logits of 8,000 classes are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def check_destination(
    out: Path, inputs: list[Path] = (), flag: str = "--out", example: str = "page.md", make_folder: bool = False
) -> None:
    """A file a user names (``--out`` of a command) may only be created, or replace a regular file that is not one
    of ``inputs``: the write is a rename, which would put a file in place of a link, a device or a pipe. Checked
    before the command's work starts; ``make_folder``: the writer makes a missing folder (a results page's)."""
    fix = f"give {flag} the path of a new or regular file"
    if out.is_symlink():
        raise ArgseError(f"{flag} {out} is a symbolic link, which would be replaced by a file; {fix}")
    if out.is_dir():
        raise ArgseError(f"{flag} {out} is a folder; give a file path such as {out / example}")
    if out.exists() and not out.is_file():
        raise ArgseError(f"{flag} {out} is not a regular file (a device, pipe or socket); {fix}")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ArgseError(f"{flag} {out}: {blocker} is a file, not a folder; {fix}")
    if not make_folder and not out.parent.is_dir():
        raise ArgseError(f"{flag} {out}: folder {out.parent} does not exist; create it first or {fix}")
    if out.exists():
        st = out.stat()
        for p in inputs:
            try:
                same = os.path.samestat(st, p.stat())
            except OSError:
                continue
            if same:
                raise ArgseError(f"{flag} {out} is the input {p}, which would be overwritten; {fix}")
