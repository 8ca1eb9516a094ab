"""Looking after a run's stages: which there are, which this config still names, what they weigh, removing the
others (prune), and importing the files of a run written by an older argse or another program."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from argse.core.errors import ArgseError
from argse.data.logits import read_logits, split_file
from argse.data.splits import HELD_OUT, manifest_sha256, read_manifest
from argse.experts.base import get_expert, list_experts, load_recipe
from argse.stages.experts import MANIFEST, MODEL
from argse.stages.gate_file import GATE_JSON, GATE_WEIGHTS, read_gate
from argse.stages.run import GATE, TRAIN_EXPERTS, TRAIN_GATING, RunStages
from argse.stages.store import RETIRED, WORK, Key, Stage, disk_bytes, remove

PREPROCESS = "preprocess.json"


@dataclass
class Row:
    """One published stage as ``python -m argse.stages`` lists it."""

    stage: Stage
    made_from: str
    current: bool
    bytes: int  # the stage's folder and, for a trained expert, its training folder


def current_ids(stages: RunStages) -> set[str]:
    """The ids of every stage this config names that can be computed (an expert whose upstream is missing, or a
    gate whose experts are not all there, has none yet)."""
    ids = {stages.splits_key.id}
    names = set(stages.cfg.experts) | {s.name for s in stages.store.stages() if s.record.kind == "expert"}
    for name in names:
        with contextlib.suppress(ArgseError):
            ids.add(stages.expert_key(name).id)
    with contextlib.suppress(ArgseError):
        ids.add(stages.gate_key().id)
    for stage in stages.store.stages():
        if stage.record.kind == "evaluation":
            with contextlib.suppress(ArgseError):
                sources = [s for s, _ in stage.record.inputs.get("sources", [])]
                ids.add(stages.evaluation_key(sources).id)
    return ids


def made_from(stage: Stage) -> str:
    inputs = stage.record.inputs
    if stage.record.kind == "expert":
        return ", ".join(["splits", *inputs.get("from", {})])
    if stage.record.kind == "gate":
        return ", ".join(n for n, _ in inputs.get("experts", []))
    if stage.record.kind == "evaluation":
        return ", ".join(n for n, _ in inputs.get("sources", []))
    return "the data"


def rows(stages: RunStages) -> list[Row]:
    current = current_ids(stages)
    out = []
    for stage in stages.store.stages():
        size = disk_bytes(stage.folder) + disk_bytes(stages.store.ckpt / stage.folder.name)
        out.append(Row(stage, made_from(stage), stage.record.id in current, size))
    return out


def leftovers(stages: RunStages) -> list[Path]:
    """What prune removes besides stages: retired stages, work folders no build holds, and training folders of
    no stage this config names (a build in progress keeps its own)."""
    store, found = stages.store, []
    found += sorted((store.root / RETIRED).iterdir()) if (store.root / RETIRED).is_dir() else []
    work = store.root / WORK
    for folder in sorted(work.iterdir()) if work.is_dir() else []:
        if folder.suffix == ".lock" or not held(work / f"{folder.name}.lock"):
            found.append(folder)
    current = current_ids(stages)
    published = {s.folder.name: s.record.id for s in store.stages()}
    pending = {f"expert-{n}-" for n in stages.cfg.experts}  # a training of the config's experts may be under way
    for folder in sorted(store.ckpt.iterdir()) if store.ckpt.is_dir() else []:
        if folder.name in published:
            keep = published[folder.name] in current
        else:
            keep = any(folder.name.startswith(p) for p in pending)
        if not keep:
            found.append(folder)
    return found


def held(lock: Path) -> bool:
    """Whether a build holds ``lock`` now."""
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def prune(stages: RunStages, dry_run: bool) -> list[tuple[Path, int]]:
    """Remove every stage this config does not name, and the leftovers; returns what was (or would be) removed."""
    gone = [(r.stage.folder, r.bytes) for r in rows(stages) if not r.current]
    gone += [(p, disk_bytes(p)) for p in leftovers(stages)]
    if not dry_run:
        for path, _ in gone:
            remove(path)
            remove(stages.store.ckpt / path.name) if path.parent == stages.store.root else None
        for link in [*stages.store.out.glob("logits/*"), *(stages.store.out / n for n in
                     ("gating", "evaluation", MANIFEST, PREPROCESS))]:  # fmt: skip
            if link.is_symlink() and not link.exists():
                link.unlink()
    return gone


# ---------------------------------------------------------------- import


def import_run(stages: RunStages, source: Path, checkpoints: Path | None) -> list[Stage]:
    """The split manifest, each expert of the config and the gate found in ``source`` (a run folder of an older
    argse, or of another program writing argse.logits/1 with the same layout), published as this config's stages.
    Each expert's logits must record the recipe this config resolves for it, and the gate its settings."""
    store, done = stages.store, []
    manifest = source / MANIFEST
    read_manifest(manifest)
    gate = source / "gating" / GATE_JSON
    if gate.is_file():  # checked before anything is published: an import is whole or nothing
        readable_gate(gate)
        check_gate(stages, gate)
    splits = store.find(stages.splits_key)
    if splits is None:
        files = [manifest, *[p for p in [source / PREPROCESS] if p.is_file()]]
        splits = publish_copy(stages, stages.splits_key, files, TRAIN_EXPERTS)
        done.append(splits)
    elif manifest_sha256(read_manifest(splits.file(MANIFEST))) != manifest_sha256(read_manifest(manifest)):
        raise ArgseError(f"{manifest} differs from this config's split manifest {splits.file(MANIFEST)}; import it "
                         f"under another run name (--set name=...)")  # fmt: skip
    store.link(MANIFEST, splits.file(MANIFEST))
    for name in stages.cfg.experts:
        folder = source / "logits" / name
        if not split_file(folder, "test").is_file():
            continue
        if name in list_experts():
            check_recipe(stages, name, folder)
        key = stages.expert_key(name, splits)
        files = [split_file(folder, s) for s in HELD_OUT] + [p for p in [folder / "config.yaml"] if p.is_file()]
        model = checkpoints / name / "best.safetensors" if checkpoints is not None else None
        stage = store.find(key) or publish_copy(stages, key, files, f"{TRAIN_EXPERTS} --experts {name}",
                                                {MODEL: model} if model is not None and model.is_file() else {})  # fmt: skip
        store.link(f"logits/{name}", stage)
        stages.forget(name)
        done.append(stage)
    if gate.is_file():
        key = stages.gate_key()
        files = [gate, *[p for p in [source / "gating" / GATE_WEIGHTS] if p.is_file()]]
        files += [split_file(source / "logits" / GATE, s) for s in HELD_OUT]
        stage = store.find(key) or publish_copy(stages, key, files, TRAIN_GATING)
        store.link("gating", stage)
        store.link(f"logits/{GATE}", stage)
        done.append(stage)
    return done


def publish_copy(stages: RunStages, key: Key, files: list[Path], command: str, renamed: dict | None = None) -> Stage:
    for path in files:
        if not path.is_file():
            raise ArgseError(f"{path} is missing; the folder to import must hold it")
    with stages.store.building(key) as work:
        for path in files:
            shutil.copyfile(path, work / path.name)
        for name, path in (renamed or {}).items():
            shutil.copyfile(path, work / name)
        return stages.store.publish(key, work, command)


def check_recipe(stages: RunStages, name: str, folder: Path) -> None:
    """The recipe an expert's logits record is the one this config resolves for it (fields the record lacks, added
    to argse after it was written, are taken as this config resolves them)."""
    recorded = {k: v for k, v in read_logits(split_file(folder, "test")).config.items() if k != "fitted"}
    resolved = json.loads(json.dumps(load_recipe(get_expert(name), stages.cfg).model_dump()))
    for field, theirs, ours in differences(recorded, resolved):
        raise ArgseError(
            f"the logits of '{name}' in {folder} were made with recipes.{name}.{field}={json.dumps(theirs)}, this "
            f"config resolves {json.dumps(ours)}; import them with --set recipes.{name}.{field}=... as recorded"
        )


def differences(recorded: dict, resolved: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted field, recorded, resolved) of every field both hold with other values, nested sections walked."""
    out = []
    for key, theirs in recorded.items():
        if key not in resolved:
            continue
        ours = resolved[key]
        if isinstance(theirs, dict) and isinstance(ours, dict):
            out += differences(theirs, ours, f"{prefix}{key}.")
        elif theirs != ours:
            out.append((f"{prefix}{key}", theirs, ours))
    return out


def readable_gate(gate: Path) -> None:
    """A gate the commands can read once imported, or one sentence: an older argse's gate.json (before its format
    tag) is not, and nothing is imported."""
    try:
        read_gate(gate.parent)
    except ArgseError as exc:
        raise ArgseError(
            f"{gate} cannot be imported ({str(exc).split(': ', 1)[-1].split(';')[0]}), so nothing was; move "
            f"{gate.parent} aside to import the rest, then train the gate: python -m argse.train_gating"
        ) from None


def check_gate(stages: RunStages, gate: Path) -> None:
    info = json.loads(gate.read_text())
    if info.get("experts") != stages.cfg.experts:
        raise ArgseError(f"{gate} mixes {info.get('experts')}, this config's experts are {stages.cfg.experts}; "
                         f"import it with --set experts=[{','.join(info.get('experts') or [])}]")  # fmt: skip
    ours = json.loads(json.dumps(stages.cfg.gating.model_dump()))
    for field, value in (info.get("config") or {}).items():
        if field in ours and ours[field] != value:
            raise ArgseError(f"{gate} was trained with gating.{field}={json.dumps(value)}, this config has "
                             f"{json.dumps(ours[field])}; import it with --set gating.{field}=... as recorded")  # fmt: skip
