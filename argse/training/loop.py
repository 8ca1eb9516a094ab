"""The training loop shared by every expert: ``TrainTask`` says what to train, ``fit`` trains it.

Optimisation is SGD with momentum, linear warm-up and multi-step or cosine decay (recipe.py).
Every epoch ends with a validation pass, an atomic checkpoint with the full optimiser and RNG
state (so the same command run again continues exactly as an uninterrupted run on CPU), and a best-by-validation
copy of the weights. Metrics stay on the device inside an epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from argse.config.sections import RuntimeConfig
from argse.core import distributed, seeds, terminal
from argse.core.errors import ArgseError
from argse.training.batches import LoaderBatches, TensorBatches
from argse.training.checkpoints import (
    BEST,
    CURVES,
    LAST,
    LiveTraining,
    load_checkpoint,
    load_module_weights,
    restore_training_state,
    save_history,
    save_training_state,
    save_weights,
)
from argse.training.curves import lr_per_step, training_curves
from argse.training.device import autocast
from argse.training.epoch_log import EpochLog
from argse.training.models import attach_dropout_generator
from argse.training.samplers import epoch_order
from argse.training.schedule import TrainRecipe, lr_factor, trained_by
from argse.training.static_step import StaticEpochs, check_cuda_graphs


@dataclass
class TrainTask:
    """What one call of :func:`fit` trains. Experts differ only in these pieces.

    The common case names the model once: ``TrainTask(name, model, data, loss_fn, evaluate,
    num_classes)`` calls, trains and checkpoints all of ``model``.
    """

    name: str
    module: nn.Module
    """Everything checkpointed (the whole model, or just a classifier)."""
    data: TensorBatches | LoaderBatches
    """The training set: its labels (for the sampler) and its batches, model-ready on the device."""
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    evaluate: Callable[[], dict[str, float]]
    """Validation metrics after each epoch; the best epoch has the highest 'balanced_acc'."""
    num_classes: int
    fingerprint: dict = field(default_factory=dict)
    """What the checkpoint must match to be resumed or reused (recipe, data digest, model)."""
    epoch_size: int | None = None
    """Draws per epoch; default: one per training sample."""
    network: nn.Module | None = None
    """What a training step calls; default ``module`` (wrapped in DistributedDataParallel under torchrun)."""
    params: list[nn.Parameter] | None = None
    """What the optimiser updates; default: every parameter of ``module``."""
    train_mode: Callable[[], None] | None = None
    """Put modules in the mode they train in; default ``module.train`` (a frozen backbone stays in eval)."""
    loss_state: dict[str, torch.Tensor] = field(default_factory=dict)
    """Tensors the loss updates across steps (group DRO's group weights): checkpointed with the training state
    and restored in place, so a continued training equals an uninterrupted one."""

    def __post_init__(self) -> None:
        self.network = self.module if self.network is None else self.network
        self.params = list(self.module.parameters()) if self.params is None else self.params
        self.train_mode = self.module.train if self.train_mode is None else self.train_mode


def fit(
    task: TrainTask,
    recipe: TrainRecipe,
    ckpt_dir: Path,
    *,
    seed: int,
    resume: bool,
    device: torch.device,
    runtime: RuntimeConfig,
    static_shapes: bool | None = None,
) -> dict:
    """Train ``task`` with ``recipe``; checkpoints go to ``ckpt_dir``. Returns the val metrics of the epoch
    kept (``recipe.checkpoint``: the best by validation, or the last), whose weights ``task`` then holds.

    ``static_shapes`` (default ``runtime.cuda_graphs``) trains with the static-shape step of
    static_step.py: captured in CUDA graphs on a GPU, run eagerly on the CPU (the equality tests).
    """
    if static_shapes is None:
        static_shapes = runtime.cuda_graphs
        if static_shapes:
            check_cuda_graphs(device, task.data)
    run = FitRun(task, recipe, ckpt_dir, seed, device, runtime, static_shapes)
    if resume and run.last_path.is_file():
        run.state = restore_training_state(run.last_path, run.live, run.state)
        if distributed.is_writer():
            terminal.console().print(f"{task.name}: resumed from epoch {run.state['epoch']} of {recipe.epochs} "
                                     f"({run.last_path})", highlight=False, soft_wrap=True)  # fmt: skip
    try:
        run.epochs()
    finally:
        if run.static_epochs is not None:
            run.static_epochs.close()
    last = recipe.checkpoint == "last"
    kept = run.state["history"][-1] if last and run.state["history"] else run.state["best"]
    if distributed.is_writer():
        schedule = lr_per_step(recipe, run.steps)
        training_curves(run.state["history"], ckpt_dir / CURVES, f"{task.name}: {ckpt_dir}", kept, schedule)
    if last:  # the module holds the last epoch's weights (trained, or restored by a resume): they become the kept ones
        if distributed.is_writer():
            meta = {"fingerprint": task.fingerprint, "epoch": kept["epoch"], "val": kept["val"]}
            save_weights(run.best_path, task.module, meta)
        distributed.barrier()
        return kept
    distributed.barrier()  # rank 0 has written best.safetensors
    tensors, _ = load_checkpoint(run.best_path)
    load_module_weights(task.module, tensors, run.best_path)
    return run.state["best"]


def make_progress(enabled: bool, console=None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
        console=console,
    )


class FitRun:
    """One call of :func:`fit`: the optimiser, scheduler, generators and history that outlive an epoch."""

    def __init__(
        self, task: TrainTask, recipe: TrainRecipe, ckpt_dir: Path, seed: int, device: torch.device, runtime, static
    ) -> None:
        self.task, self.recipe, self.device, self.runtime = task, recipe, device, runtime
        self.ckpt_dir = ckpt_dir
        self.last_path, self.best_path = ckpt_dir / LAST, ckpt_dir / BEST
        self.static, self.static_epochs = static, None
        # Fused CUDA SGD reads a tensor learning rate on the device; foreach SGD would read it on the host.
        fused = True if static and device.type == "cuda" else None
        self.opt = torch.optim.SGD(
            task.params,
            lr=recipe.lr,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
            weight_decay=recipe.weight_decay,
            fused=fused,
        )
        self.labels = task.data.labels
        self.draws = task.epoch_size or len(self.labels)
        self.steps = -(-self.draws // recipe.batch_size)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, self.steps, recipe))
        self.gens = {
            "sampler": seeds.generator(seed, "sampler"),
            "augment": seeds.generator(seed, "augment", device),
            "dropout": seeds.generator(seed, "dropout", device),
        }
        attach_dropout_generator(task.network, self.gens["dropout"])
        seeds.seed_global(seed, "torch")  # for plugins that draw from torch's global generator
        self.live = LiveTraining(task.module, self.opt, self.sched, self.gens, task.loss_state)
        self.state = {
            "epoch": 0,
            "best": None,
            "history": [],
            "fingerprint": task.fingerprint,
            "recipe": trained_by(recipe),
        }

    def epochs(self) -> None:
        """The remaining epochs, each trained, validated and checkpointed."""
        network = self.task.network
        if distributed.is_distributed():
            # Built after a resume has loaded the weights; DDP averages gradients over ranks.
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            network = DistributedDataParallel(network, device_ids=device_ids)
        total, done = self.recipe.epochs * self.steps, self.state["epoch"] * self.steps
        writer, console = distributed.is_writer(), terminal.console()
        lines = writer and terminal.log_lines(self.runtime.log_lines)
        # Off a terminal a rich bar is drawn once its work is done: the lines replace it there.
        bar_on = self.runtime.progress and writer and (console.is_terminal or not lines)
        log = EpochLog(self.task.name, self.recipe.epochs, self.state["epoch"], self.ckpt_dir,
                       console if lines else None, writer and self.runtime.tensorboard)  # fmt: skip
        with make_progress(bar_on, console) as progress:
            bar = progress.add_task(self.task.name, total=total, completed=done, info="")
            try:
                for epoch in range(self.state["epoch"], self.recipe.epochs):
                    start = time.perf_counter()

                    def advance(epoch=epoch) -> None:
                        progress.advance(bar)
                        log.step(epoch, self.steps)

                    loss_sum = self.train_epoch(epoch, network, advance)
                    train_seconds = time.perf_counter() - start  # the divergence check waited for the device
                    record = self.end_epoch(epoch, loss_sum, train_seconds, start, log)
                    val = record["val"]["balanced_acc"]
                    progress.update(
                        bar, info=f"epoch {epoch + 1} loss {record['train_loss']:.3f} val bal-acc {val:.3f}"
                    )
            finally:
                log.close()

    def train_epoch(self, epoch: int, network: nn.Module, advance: Callable[[], None]) -> torch.Tensor:
        """One pass over the sampler's order; returns this rank's summed loss."""
        task, recipe = self.task, self.recipe
        task.train_mode()
        # Every rank draws the same global order; each trains on its shard of every batch.
        order = epoch_order(self.labels, recipe.sampler, self.gens["sampler"], task.num_classes, self.draws)
        aug = self.gens["augment"] if recipe.augment else None
        if self.static:
            loss_sum, first_bad = self.static_steps(aug).epoch(order, self.sched, advance)
        else:
            loss_sum, first_bad = self.eager_steps(order, aug, network, advance)
        self.stop_if_diverged(epoch, distributed.all_max(first_bad))
        return loss_sum

    def eager_steps(self, order, aug, network, advance) -> tuple[torch.Tensor, torch.Tensor]:
        """The steps of one epoch, each shaped by its batch; returns (summed loss, first non-finite step)."""
        task, device = self.task, self.device
        loss_sum = torch.zeros((), device=device)
        first_bad = torch.full((), -1, device=device)
        for step, (x, y, n) in enumerate(task.data.batches(order, self.recipe.batch_size, aug)):
            with autocast(device, self.runtime):
                out = network(x).float()
            loss = distributed.scaled_loss(task.loss_fn(out, y), out, len(y), n)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            loss = loss.detach()
            # Track divergence on the device: no host synchronisation inside the epoch.
            first_bad = torch.where(~loss.isfinite() & (first_bad < 0), step, first_bad)
            loss_sum += loss
            advance()
        return loss_sum, first_bad

    def static_steps(self, aug: torch.Generator | None) -> StaticEpochs:
        """The static-shape steps, built at the first epoch: after a resume has restored the optimiser."""
        if self.static_epochs is None:
            self.static_epochs = StaticEpochs(
                self.task,
                self.opt,
                self.draws,
                self.recipe.batch_size,
                aug,
                self.runtime,
                self.device,
                dropout=self.gens["dropout"],
            )
        return self.static_epochs

    def stop_if_diverged(self, epoch: int, first_bad: torch.Tensor) -> None:
        if int(first_bad) < 0:
            return
        last = self.last_path
        kept = f"the last good checkpoint {last} is kept" if last.is_file() else "no checkpoint was written"
        raise ArgseError(
            f"{self.task.name}: the loss became NaN or infinite at epoch {epoch + 1}, step {int(first_bad) + 1}; "
            f"{kept}; lower the learning rate and rerun (another recipe: it trains afresh)"
        )

    def end_epoch(self, epoch: int, loss_sum: torch.Tensor, train_seconds: float, start: float, log: EpochLog) -> dict:
        """Validate, report, then write best (if it is), last and metrics.jsonl; returns the epoch's record.

        The report comes first: an epoch whose checkpoint a kill prevented is trained again when the same command continues,
        and its TensorBoard events are then replaced (purge_step), whereas events after it would be lost."""
        task, state = self.task, self.state
        val = task.evaluate()
        record = {
            "epoch": epoch + 1,
            "lr": self.opt.param_groups[0]["lr"],
            "train_loss": float(distributed.all_sum(loss_sum)) / distributed.world_size() / self.steps,
            "train_seconds": round(train_seconds, 3),
            "seconds": round(time.perf_counter() - start, 3),
            "val": val,
        }
        log.epoch(record)
        state["history"].append(record)
        state["epoch"] = epoch + 1
        if state["best"] is None or val["balanced_acc"] > state["best"]["val"]["balanced_acc"]:
            state["best"] = record
            save_weights(self.best_path, task.module, {"fingerprint": task.fingerprint, "epoch": epoch + 1, "val": val})
        save_training_state(self.last_path, self.live, state)
        save_history(self.ckpt_dir, state["history"])
        return record
