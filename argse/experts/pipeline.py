"""Training a run's experts: the plan (registered names, recipes, dependency order), then each expert
trained, calibrated and exported one by one, as a team of threads (``--team``) or in child
processes (``--parallel``); ``python -m argse.train_experts`` is the command.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace

from argse import distributed, runlock, storage, terminal
from argse.config import RunConfig, dump_yaml
from argse.data import LTData, prepare_data
from argse.datasets import get_dataset
from argse.errors import ArgseError
from argse.experts.base import ExpertContext, load_recipe
from argse.experts.registry import get_expert, list_experts
from argse.groups import TAIL
from argse.launcher import shared_cores, train_as_team, train_in_parallel
from argse.logits import load_sources
from argse.metrics import source_reports
from argse.preprocess import write_preprocess
from argse.training import resolve_device


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


def check_fresh(cfg: RunConfig, plan: list[tuple[type, object]]) -> None:
    """Refuse to retrain an expert that already has checkpoints or exported logits in this run, in one sentence
    that names them and the two ways on (--resume or --overwrite)."""
    kept = [
        cls.name
        for cls, _ in plan
        if cfg.paths.logits_dir(cls.name).is_dir() or _has_files(cfg.paths.expert_ckpt(cls.name))
    ]
    if kept:
        one = len(kept) == 1
        raise ArgseError(
            f"run '{cfg.name}' already has {'expert' if one else 'experts'} {', '.join(kept)} (under {cfg.out_dir} "
            f"and {cfg.ckpt_dir}); pass --resume to continue {'it' if one else 'them'}, --overwrite to train "
            f"{'it' if one else 'them'} again from scratch, or --set name=... for a new run"
        )


def _has_files(folder) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def describe_run(cfg: RunConfig, data: LTData, device) -> str:
    where = f"{device} x {distributed.world_size()} processes" if distributed.is_distributed() else str(device)
    return (
        f"[bold]{cfg.name}[/]: {data.dataset}, {data.num_classes} classes, {len(data.train.labels)} training "
        f"images ({int(data.class_counts.max())} -> {int(data.class_counts.min())} per class), "
        f"{data.groups.size(TAIL)} tail classes, device {where}"
    )


def train_one(ctx: ExpertContext, cls: type, recipe, console) -> None:
    """Train, calibrate and export one expert."""
    expert = cls(ctx, recipe)
    expert.train()
    temperature = expert.calibrate()
    paths = expert.export_logits()
    distributed.barrier()  # the files rank 0 wrote are complete before any rank reads them
    console.print(f"{cls.name}: temperature {temperature:.3f}; logits in {paths['test'].parent}")


def train_here(cfg: RunConfig, data: LTData, device, plan: list, resume: bool, console) -> None:
    """Each planned expert in turn, in this process (all ranks under torchrun)."""
    ctx = ExpertContext(cfg, data, device, resume=resume)
    for cls, recipe in plan:
        console.rule(f"expert {cls.name}")
        train_one(ctx, cls, recipe, console)


def train_team(cfg: RunConfig, data: LTData, device, plan: list, resume: bool, console) -> None:
    """Every planned expert at once in this process (--team): one thread and CUDA stream each, one copy of the data."""
    # One live display at a time: the threads train without progress bars, as --parallel's children do.
    quiet = replace(cfg, runtime=replace(cfg.runtime, progress=False))
    ctx = ExpertContext(quiet, data, device, resume=resume)
    ctx.load_shared()
    with shared_cores(device, len(plan), cfg.runtime.threads):
        train_as_team(plan, lambda cls, recipe: train_one(ctx, cls, recipe, console), device, console)


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
    resume: bool = False,
    overwrite: bool = False,
    parallel: argparse.Namespace | None = None,
    team: bool = False,
) -> dict[str, dict[str, float]] | None:
    """Train and export experts ``names``; their test reports on rank 0 (None on the other ranks).

    An expert that already has files in this run is refused unless ``resume`` (continue it) or
    ``overwrite`` (train it again from scratch).

    ``parallel``: the command line (with --parallel N) whose --config and --set each child process
    repeats. ``team``: all experts at once in threads of this process (launcher.train_as_team).
    """
    plan = plan_experts(cfg, names)
    if parallel is not None and distributed.launched():
        raise ArgseError("--parallel starts its own processes; run it without torchrun")
    if team:
        check_team(cfg, parallel is not None)
    runlock.lock_run(cfg.out_dir, "train_experts")  # one process per run name (rank 0 under torchrun); after the checks
    if not (resume or overwrite):
        check_fresh(cfg, plan)  # under the lock: no other writer adds files meanwhile
    device = resolve_device(cfg.runtime)
    console = terminal.console()  # after joining torchrun: only rank 0 prints
    # Rank 0 first: it writes the split manifest (and any image cache) that the others then read.
    data = distributed.rank_zero_first(lambda: prepare_data(cfg))
    console.print(describe_run(cfg, data, device))
    storage.write_text(cfg.paths.config, dump_yaml(asdict(cfg)))
    write_preprocess(cfg.paths, data)  # for argse.predict
    if parallel is not None:
        train_in_parallel(parallel, plan, cfg, console)
    elif team:
        train_team(cfg, data, device, plan, resume, console)
    else:
        train_here(cfg, data, device, plan, resume, console)
    # The reports are read back from the exported files rather than kept from training: under --parallel
    # the experts trained in child processes, and the files are checked against the run's splits on the way.
    return (
        source_reports(load_sources(cfg.out_dir, names, ["test"])["test"], cfg.data)
        if distributed.rank() == 0
        else None
    )
