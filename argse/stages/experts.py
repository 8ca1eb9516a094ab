"""Training a run's experts into stages: the plan (registered names, recipes, dependency order), the split
stage, then one stage per expert, trained, calibrated and exported one by one, as a team of threads
(``--team``) or in child processes (``--parallel``); ``python -m argse.train_experts`` is the command.

An expert whose stage this config already has is not trained again (one line says so). One that is not
there trains in ``checkpoints/NAME/<stage folder>/``; the same command run again continues from the last
epoch there, and a changed recipe is another stage that starts afresh. ``rebuild`` trains a stage again
from scratch and publishes it in place of the old one (which is kept under ``stages/.retired/``).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from argse.config.loading import dump_yaml
from argse.config.schema import changed
from argse.config.sections import RunConfig
from argse.core import distributed, storage, terminal
from argse.core.errors import ArgseError
from argse.data.datasets import get_dataset
from argse.data.groups import TAIL
from argse.data.logits import load_sources, split_file, write_logits
from argse.data.long_tail import HELD_OUT, LTData, prepare_data
from argse.data.metrics import source_reports
from argse.data.preprocess import FILE as PREPROCESS
from argse.data.preprocess import write_preprocess
from argse.data.splits import manifest_sha256, read_manifest, write_manifest
from argse.experts.base import ExpertContext, Exported, get_expert, list_experts, load_recipe
from argse.stages.launcher import shared_cores, train_as_team, train_in_parallel
from argse.stages.run import TRAIN_EXPERTS, RunStages
from argse.stages.store import Key, Stage, Store, remove
from argse.training import resolve_device, trained_by
from argse.training.device import usable_cores

MANIFEST, MODEL = "splits.json", "model.safetensors"


def plan_experts(cfg: RunConfig, names: list[str]) -> list[tuple[type, object]]:
    """(expert class, recipe) per name; every name and recipe is checked before any time is spent."""
    for key in cfg.recipes:  # the registry, not the config, knows the experts (plugins add some)
        if key not in list_experts():
            raise ArgseError(
                f"config 'recipes' names unknown expert '{key}'; available experts: {', '.join(list_experts())}"
            )
    plan = [(get_expert(n), load_recipe(get_expert(n), cfg)) for n in names]
    for cls, recipe in plan:
        for needed in cls.requires(recipe):
            if needed not in list_experts():
                raise ArgseError(
                    f"expert '{cls.name}' requires '{needed}', which is not a registered expert; "
                    f"fix its recipe (available experts: {', '.join(list_experts())})"
                )
    return in_dependency_order(plan)


def in_dependency_order(plan: list[tuple[type, object]]) -> list[tuple[type, object]]:
    """The plan with every expert after the planned experts it requires, otherwise in the order given."""
    names = {cls.name for cls, _ in plan}
    needs = {cls.name: {n for n in cls.requires(recipe) if n in names and n != cls.name} for cls, recipe in plan}
    ordered: list[tuple[type, object]] = []
    while len(ordered) < len(plan):
        done = {cls.name for cls, _ in ordered}
        ready = [p for p in plan if p[0].name not in done and needs[p[0].name] <= done]
        if not ready:
            waiting = ", ".join(f"{n} needs {', '.join(sorted(needs[n]))}" for n in sorted(names - done))
            raise ArgseError(f"the experts wait on each other ({waiting}); break the cycle in their recipes")
        ordered.append(ready[0])
    return ordered


def describe_run(cfg: RunConfig, data: LTData, device) -> str:
    where = f"{device} x {distributed.world_size()} processes" if distributed.is_distributed() else str(device)
    if device.type == "cpu":  # runtime.threads, or the cores that were free when the command started
        where += f" ({torch.get_num_threads()} of {usable_cores()} cores; runtime.threads=N to choose)"
    return (
        f"[bold]{cfg.name}[/]: {data.dataset}, {data.num_classes} classes, {len(data.train.labels)} training "
        f"images ({int(data.class_counts.max())} -> {int(data.class_counts.min())} per class), "
        f"{data.groups.size(TAIL)} tail classes, device {where}"
    )


@contextlib.contextmanager
def building(store: Store, key: Key) -> Iterator[Path | None]:
    """The stage's work folder, under its build lock, on the process that writes (rank 0); None elsewhere."""
    if not distributed.is_writer():
        yield None
        return
    with store.building(key) as work:
        yield work


# ---------------------------------------------------------------- the split stage


def publish_splits(stages: RunStages, data: LTData, console) -> Stage:
    """The split stage of this config (split manifest and preprocess.json): found, and checked against the data
    just read, or published. Rank 0 decides and builds; every rank passes the same barrier, then finds it."""
    store, key = stages.store, stages.splits_key
    if distributed.is_writer() and store.find(key) is None:
        with building(store, key) as work:
            write_manifest(work / MANIFEST, data.manifest)
            write_preprocess(work / PREPROCESS, data)
            console.print(f"splits: published {store.publish(key, work, TRAIN_EXPERTS).folder}")
    distributed.barrier()
    found = store.find(key)
    if manifest_sha256(read_manifest(found.file(MANIFEST))) != data.sha256:
        raise ArgseError(
            f"the data read now differ from the split manifest made for this config ({found.file(MANIFEST)}): the "
            f"files under data.root changed; restore them, or use another run name (--set name=...)"
        )
    if distributed.is_writer():
        store.link(MANIFEST, found.file(MANIFEST))
        store.link(PREPROCESS, found.file(PREPROCESS))
    return found


# ---------------------------------------------------------------- one expert


def exported(stages: RunStages, name: str) -> Exported:
    """A published expert as the experts that build on it and argse.predict take it."""
    stage = stages.expert(name)
    model = stage.file(MODEL) if MODEL in stage.record.files else None
    if model is not None:
        stages.store.verify(stage, [MODEL])  # weights are read whole anyway: their bytes are cheap to check
    cls = get_expert(name)
    upstream = [n for n in cls.requires(load_recipe(cls, stages.cfg)) if n != name]
    source = exported(stages, upstream[0]) if upstream and model is None else None
    return Exported(name, stage.folder, model, source)


def build_expert(stages: RunStages, ctx: ExpertContext, cls: type, recipe, splits: Stage, rebuild: bool,
                 console) -> Stage:  # fmt: skip
    """The stage of one expert: found, or trained (continuing its training folder), calibrated and published."""
    name, store = cls.name, stages.store
    key = stages.expert_key(name, splits)
    found = store.find(key)
    if found is not None and not rebuild:
        console.print(f"{name}: found {found.folder} (made from this config; not trained again)")
        store.link(f"logits/{name}", found) if distributed.is_writer() else None
        return found
    for needed in cls.requires(recipe):
        if needed != name:
            ctx.exported[needed] = exported(stages, needed)
    train_dir = store.training_folder(key)
    with building(store, key) as work:
        if rebuild and work is not None:
            remove(train_dir)  # from scratch
        if work is not None:
            storage.write_text(train_dir / "config.yaml", stage_config(ctx.config, name, recipe))
        ctx.folders[name] = train_dir
        expert = cls(ctx, recipe)
        expert.train()
        temperature = expert.calibrate()
        logits = expert.held_out_logits()
        if work is not None:
            write_export(work, ctx, expert, logits, temperature, train_dir)
            found = store.publish(key, work, f"{TRAIN_EXPERTS} --experts {name}")
    distributed.barrier()  # the stage rank 0 published is there before any rank reads it
    stages.forget(name)
    found = store.find(key)
    if distributed.is_writer():
        store.link(f"logits/{name}", found)
    console.print(f"{name}: temperature {temperature:.3f}; published {found.folder}")
    return found


def stage_config(cfg: RunConfig, name: str, recipe) -> str:
    """config.yaml of an expert's training folder: the run config and the recipe that made it. The stage holds
    what its content depends on only (its record names the recipe): logs, timings and paths stay out of it."""
    return dump_yaml({"run": cfg.model_dump(), "expert": name, "recipe": trained_by(recipe)})


def write_export(work: Path, ctx: ExpertContext, expert, logits: dict, temperature: float, train_dir: Path) -> None:
    """The expert's logits of every held-out split and its kept weights, into ``work``."""
    d = ctx.data
    for split in HELD_OUT:
        held = d.held_out[split]
        write_logits(
            split_file(work, split), logits[split], held.labels, held.indices, expert=expert.name, dataset=d.dataset,
            split=split, temperature=temperature, class_counts=d.class_counts.tolist(), splits_sha256=d.sha256,
            config=expert.export_record(),
        )  # fmt: skip
    kept = train_dir / "best.safetensors"
    if kept.is_file():  # an expert computed from another's logits has no network of its own
        shutil.copyfile(kept, work / MODEL)


# ---------------------------------------------------------------- the command


def train_here(stages, data, device, plan, splits, rebuild, console) -> None:
    """Each planned expert in turn, in this process (all ranks under torchrun)."""
    ctx = ExpertContext(stages.cfg, data, device)
    for cls, recipe in plan:
        console.rule(f"expert {cls.name}")
        build_expert(stages, ctx, cls, recipe, splits, rebuild, console)


def train_team(stages, data, device, plan, splits, rebuild, console) -> None:
    """Every planned expert at once in this process (--team): one thread and CUDA stream each, one copy of the data."""
    cfg = stages.cfg
    # One live display at a time: the threads train without progress bars, as --parallel's children do.
    quiet = changed(cfg, runtime=changed(cfg.runtime, progress=False))
    ctx = ExpertContext(quiet, data, device)
    ctx.load_shared()
    with shared_cores(device, len(plan), cfg.runtime.threads):
        train_as_team(plan, lambda cls, recipe: build_expert(stages, ctx, cls, recipe, splits, rebuild, console),
                      device, console)  # fmt: skip


def check_team(cfg: RunConfig, parallel: bool) -> None:
    """Refuse what --team cannot be combined with, in one sentence."""
    if parallel:
        raise ArgseError("--team and --parallel are two ways to train experts at once; choose one")
    if distributed.launched():
        raise ArgseError("--team trains the experts in threads of one process; run it without torchrun")
    if cfg.runtime.compile:
        raise ArgseError(
            "--team cannot be combined with runtime.compile=true (torch.compile is not thread-safe); "
            "set runtime.compile=false or train without --team"
        )
    if not get_dataset(cfg.data.dataset).in_memory:
        raise ArgseError(
            f"--team shares one copy of the training images on the device, but data.dataset={cfg.data.dataset} "
            f"is decoded by DataLoader workers; train without --team (or with --parallel)"
        )


def run(
    cfg: RunConfig,
    names: list[str],
    *,
    rebuild: bool = False,
    parallel: argparse.Namespace | None = None,
    team: bool = False,
) -> dict[str, dict[str, float]] | None:
    """The stages of experts ``names``, found or made; their test reports on rank 0 (None on the other ranks).

    ``parallel``: the command line (with --parallel N) whose --config and --set each child process
    repeats. ``team``: all experts at once in threads of this process (launcher.train_as_team).
    """
    plan = plan_experts(cfg, names)
    if parallel is not None and distributed.launched():
        raise ArgseError("--parallel starts its own processes; run it without torchrun")
    if team:
        check_team(cfg, parallel is not None)
    device = resolve_device(cfg.runtime)
    console = terminal.console()  # after joining torchrun: only rank 0 prints
    stages = RunStages(cfg)
    # Rank 0 first: it writes any image cache that the others then read.
    data = distributed.rank_zero_first(lambda: prepare_data(cfg))
    console.print(describe_run(cfg, data, device))
    splits = publish_splits(stages, data, console)
    storage.write_text(cfg.out_dir / "config.yaml", dump_yaml(cfg))
    if parallel is not None:
        train_in_parallel(parallel, plan, cfg, console)
    elif team:
        train_team(stages, data, device, plan, splits, rebuild, console)
    else:
        train_here(stages, data, device, plan, splits, rebuild, console)
    if distributed.rank() != 0:
        return None
    # Read back from the published stages: under --parallel the experts trained in child processes.
    stages = RunStages(cfg)
    folders = {n: stages.expert(n).folder for n in names}
    return source_reports(load_sources(folders, ["test"], splits.file(MANIFEST))["test"], cfg.data)
