"""Sets of files written together, and what each set was made from (``argse.set/1``).

A set is a folder's files that belong together: an expert's exported splits, the gate's files,
the mixture's splits. Each file is written atomically on its own; then ``set.json``, the commit
record, is written last. It holds the sha256 of every member file's bytes, the ids of the sets it
was made from (its lineage) and the command that makes it again. A set's id is the digest of its
members' digests, so re-exporting anything gives it a new id.

A reader opens a set with :func:`open_set`: a member whose bytes differ from the record (a run
stopped half-way through writing the set, or a file replaced by hand) and an upstream set whose
id is no longer the one recorded (an expert retrained after the gate was trained on it) are each
refused in one sentence that names the file and the command to rerun.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from argse import storage
from argse.errors import ArgseError
from argse.records import mapping, read_record, string

FORMAT = "argse.set/1"
RECORD = "set.json"


def set_id(digests: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def commit(folder: Path, members: list[str], made_from: dict[str, str], remake: str, **extra: str) -> str:
    """Write ``folder/set.json`` for the files ``members`` (written before it); returns the set's id.

    ``made_from`` maps each upstream set's folder (relative to the run's outputs folder) to its id;
    ``extra`` records digests of plain inputs (an expert's checkpoint).
    """
    digests = {name: storage.file_sha256(folder / name) for name in members}
    sid = set_id(digests | extra)
    record = {"format": FORMAT, "id": sid, "files": digests, "made_from": made_from, "remake": remake} | extra
    storage.write_json(folder / RECORD, record)
    return sid


@dataclass
class FileSet:
    folder: Path
    id: str
    files: dict[str, str]
    made_from: dict[str, str]
    remake: str  # the command that writes the set again
    record: dict  # set.json as written (with any extra digests, e.g. an expert's checkpoint)


def read_set(folder: Path, what: str) -> FileSet:
    """``folder/set.json`` with its fields checked (member files are not read)."""
    rec = read_record(folder / RECORD, FORMAT, f"the commit record of {what}", f"make {what} again")
    remake = rec.get("remake", string())
    rec.fix = f"rerun {remake}"
    files = rec.get("files", mapping())
    made = rec.get("made_from", mapping())
    if not all(isinstance(v, str) for v in (*files.values(), *made.values())):
        raise rec.fail("its 'files' and 'made_from' must map names to digests")
    rec.get("id", string())
    return FileSet(folder, rec.data["id"], files, made, remake, rec.data)


def current_id(folder: Path) -> str | None:
    """The id of the set committed in ``folder``, or None when there is none."""
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("id")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def open_set(folder: Path, members: list[str], what: str, root: Path, lineage: bool = True) -> FileSet:
    """The set in ``folder`` whose files ``members`` a reader is about to use, checked whole and (unless
    ``lineage`` is false) against the sets it was made from (``root``: the run's outputs folder)."""
    if not (folder / RECORD).is_file():
        raise ArgseError(
            f"{what} in {folder} has no commit record ({RECORD}): it was left half-written or made by an "
            f"older argse; make it again"
        )
    fs = read_set(folder, what)
    for name in members:
        path = folder / name
        if name not in fs.files or not path.is_file() or storage.file_sha256(path) != fs.files[name]:
            raise ArgseError(
                f"{path} is not the file its set was written with (a run stopped while writing {what}, or the "
                f"file was replaced); rerun {fs.remake}"
            )
    if lineage:
        check_lineage(fs, what, root)
    return fs


def check_lineage(fs: FileSet, what: str, root: Path, then: list[str] = ()) -> None:
    """Every set ``fs`` was made from, and every set those were made from, is still the one recorded;
    the sentence names the commands to rerun, from the stale set down to what the reader uses."""
    for upstream, recorded in fs.made_from.items():
        if current_id(root / upstream) != recorded:
            steps = ", then ".join(dict.fromkeys([fs.remake, *then]))
            raise ArgseError(
                f"{what} is stale: {root / upstream} was written again after {fs.folder.relative_to(root)}/ was made "
                f"from it; "
                f"rerun {steps}"
            )
        check_lineage(read_set(root / upstream, upstream), what, root, [fs.remake, *then])


def ids_of(root: Path, folders: list[str]) -> dict[str, str]:
    """``made_from`` for the sets in ``folders`` (relative to ``root``), each of which must be committed."""
    out = {}
    for folder in folders:
        sid = current_id(root / folder)
        if sid is None:
            raise ArgseError(f"{root / folder} holds no committed set; make it first")
        out[folder] = sid
    return out


def adopt(root: Path, layers: list[list[tuple[Path, list[str], str, dict[str, str]]]]) -> list[Path]:
    """Commit, as they are, the sets of a run written without commit records (``layers``: lists of
    (folder, members, remake, extra digests), upstream layers first, each layer made from the one
    before); returns the folders committed. Only for files a user vouches belong together."""
    done, below = [], {}
    for layer in layers:
        ids = {}
        for folder, members, remake, extra in layer:
            if not all((folder / m).is_file() for m in members):
                continue
            sid = current_id(folder)
            if sid is None:
                sid = commit(folder, members, below, remake, **extra)
                done.append(folder)
            ids[str(folder.relative_to(root))] = sid
        below = ids
    return done
