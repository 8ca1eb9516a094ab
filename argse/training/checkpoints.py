"""The checkpoint format (argse.checkpoint/1): weights, and for ``last`` the full training state.

A checkpoint is one safetensors file: tensors ``model.*`` (the weights), and in ``last`` also
``optim.<param>.<key>`` (optimiser tensors) and ``rng.*`` (generator states); the metadata holds
the format tag and a JSON ``meta`` (epoch, history, fingerprint, recipe, optimiser and scheduler
state). Restoring all of it is what makes a continued training equal an uninterrupted run on CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from argse.core import storage
from argse.core.errors import ArgseError

CHECKPOINT_FORMAT = "argse.checkpoint/1"

# The files of a training folder (an expert's, or one stage of a multi-stage expert's).
BEST, LAST, METRICS, CURVES, TENSORBOARD = (
    "best.safetensors",  # the kept epoch's weights: the best by val balanced accuracy, or the last (recipe checkpoint)
    "last.safetensors",  # the full training state after the last finished epoch (continued by the next build)
    "metrics.jsonl",
    "training_curves.png",  # metrics.jsonl drawn: loss and validation accuracy per epoch
    "tensorboard",  # TensorBoard event files (runtime.tensorboard)
)


def save_history(folder: Path, history: list[dict]) -> None:
    """metrics.jsonl: one line per finished epoch, rewritten whole after each."""
    storage.write_text(folder / METRICS, "".join(json.dumps(r) + "\n" for r in history))


def save_weights(path: Path, module: nn.Module, meta: dict) -> None:
    storage.save_tensors(
        path,
        {f"model.{k}": v for k, v in module.state_dict().items()},
        {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta)},
    )


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the ``meta`` object of a checkpoint; a file without a readable ``meta`` is refused."""
    tensors, metadata = storage.load_tensors(path, "checkpoint")
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ArgseError(f"checkpoint {path} is not an argse checkpoint (format {metadata.get('format')!r})")
    try:
        meta = json.loads(metadata["meta"])
    except (KeyError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("fingerprint"), dict):
        raise ArgseError(
            f"checkpoint {path} has no readable 'meta' record (with its fingerprint); delete it and retrain the expert"
        )
    return tensors, meta


def load_module_weights(module: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        module.load_state_dict(weights)
    except RuntimeError:
        raise ArgseError(
            f"checkpoint {path} does not fit this model (different classes, depth or width); "
            f"delete it or use the matching config"
        ) from None


@dataclass
class LiveTraining:
    """The objects of a training run that a checkpoint saves and a resume restores."""

    module: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    gens: dict[str, torch.Generator]
    loss_state: dict[str, torch.Tensor] = field(default_factory=dict)  # restored in place (see TrainTask)


def save_training_state(path: Path, live: LiveTraining, state: dict) -> None:
    """Everything a resumed run needs: weights, optimiser, scheduler, every RNG and ``state``."""
    tensors = {f"model.{k}": v for k, v in live.module.state_dict().items()}
    opt_state = live.opt.state_dict()
    plain: dict[str, dict] = {}
    for pid, entries in opt_state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    tensors |= {f"loss.{k}": v.detach().cpu() for k, v in live.loss_state.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    for name, g in live.gens.items():
        tensors[f"rng.{name}"] = g.get_state()
    optim_meta = {"param_groups": opt_state["param_groups"], "plain_state": plain}
    meta = state | {"optim": optim_meta, "scheduler": live.sched.state_dict()}
    storage.save_tensors(path, tensors, {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta)})


def restore_training_state(path: Path, live: LiveTraining, fresh: dict) -> dict:
    """Load what :func:`save_training_state` wrote into the live objects; returns the saved ``state``.

    ``fresh`` is the state a new run would start from: its keys are what is restored, and its
    ``fingerprint`` and ``recipe`` must equal the saved ones.
    """
    tensors, meta = load_checkpoint(path)
    saved = [f"rng.{n}" for n in live.gens] + [f"loss.{k}" for k in live.loss_state]
    _check_resumable(path, tensors, meta, [*fresh, "optim", "scheduler"], saved)
    if meta["fingerprint"] != fresh["fingerprint"] or meta["recipe"] != fresh["recipe"]:
        raise ArgseError(
            f"checkpoint {path} was made with another recipe, data or model; remove its folder, or rerun with --rebuild "
            f"to start over"
        )
    _check_state(path, tensors, meta, live)
    load_module_weights(live.module, tensors, path)
    try:
        opt_state = {"param_groups": meta["optim"]["param_groups"], "state": {}}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                opt_state["state"].setdefault(int(pid), {})[name] = value
        for pid, entries in meta["optim"]["plain_state"].items():
            opt_state["state"].setdefault(int(pid), {}).update(entries)
        live.opt.load_state_dict(opt_state)
        live.sched.load_state_dict(meta["scheduler"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise _unusable(path, f"its optimiser or scheduler state does not load ({type(exc).__name__}: {exc})") from None
    torch.set_rng_state(tensors["rng.torch"])
    for name, g in live.gens.items():
        g.set_state(tensors[f"rng.{name}"])
    for name, t in live.loss_state.items():
        t.copy_(tensors[f"loss.{name}"])
    return {k: meta[k] for k in fresh}


def _unusable(path: Path, why: str) -> ArgseError:
    return ArgseError(f"checkpoint {path} cannot be continued: {why}; remove its folder or rerun with --rebuild")


def _check_state(path: Path, tensors: dict, meta: dict, live: LiveTraining) -> None:
    """The fields a continued run reads, checked before any of them is used: the optimiser's groups against this
    run's, every random state as the byte vector torch takes, and the loss's state in the shape it has."""
    optim = meta.get("optim")
    groups = optim.get("param_groups") if isinstance(optim, dict) else None
    sizes = (
        [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in groups] if isinstance(groups, list) else []
    )
    if sizes != [len(group["params"]) for group in live.opt.param_groups]:
        raise _unusable(path, "its optimiser's parameter groups are not this run's")
    for saved, ours in zip(groups, live.opt.param_groups, strict=True):
        for key, value in ours.items():
            kind = float if isinstance(value, float) else type(value)  # an int lr is a float one
            if key != "params" and not isinstance(saved.get(key), kind if kind is not float else (int, float)):
                raise _unusable(path, f"its optimiser's '{key}' is {saved.get(key)!r}, not a {kind.__name__}")
    if not isinstance(optim.get("plain_state"), dict) or not isinstance(meta.get("scheduler"), dict):
        raise _unusable(path, "its optimiser or scheduler state is missing or malformed")
    for name in ["rng.torch", *(f"rng.{n}" for n in live.gens)]:
        state = tensors[name]
        if state.dtype != torch.uint8 or state.dim() != 1:
            raise _unusable(
                path, f"its random state '{name}' is a {state.dtype} tensor of shape {list(state.shape)}, not bytes"
            )
    for name, t in live.loss_state.items():
        value = tensors[f"loss.{name}"]
        if value.shape != t.shape or not value.dtype.is_floating_point:
            raise _unusable(
                path,
                f"its loss state 'loss.{name}' is a {value.dtype} tensor of shape {list(value.shape)}, not "
                f"{list(t.shape)} floats",
            )


def _check_resumable(path: Path, tensors: dict, meta: dict, keys: list[str], saved: list[str]) -> None:
    """A weights-only file (e.g. best.safetensors copied over last.safetensors) cannot be resumed; ``saved``: the
    tensors besides the weights and optimiser it must hold (random states, the loss's state)."""
    missing = [k for k in keys if k not in meta] + [k for k in ["rng.torch", *saved] if k not in tensors]
    if missing:
        raise ArgseError(
            f"checkpoint {path} holds weights only, not the training state a continued run needs (it lacks "
            f"'{missing[0]}'; best.safetensors is such a file); restore the original last.safetensors "
            f"or rerun with --rebuild"
        )
