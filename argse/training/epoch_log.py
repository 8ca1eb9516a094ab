"""What each training epoch reports besides metrics.jsonl: a plain line where no progress bar is drawn
(``runtime.log_lines``), and TensorBoard events (``runtime.tensorboard``). Rank 0 only."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from argse.core.errors import ArgseError
from argse.core.terminal import duration
from argse.training.checkpoints import TENSORBOARD

HEARTBEAT_S = 60.0  # the longest a training log stays silent inside an epoch
TENSORBOARD_FIX = "pip install 'argse[tensorboard]' (or tensorboard), or set runtime.tensorboard=false"


def epoch_line(name: str, record: dict, epochs: int, eta_seconds: float) -> str:
    """'ce: epoch 3/15 loss 1.2345 val bal-acc 0.4560 lr 0.1 4.2 s ETA 46.0 s' for one metrics.jsonl record."""
    return (
        f"{name}: epoch {record['epoch']}/{epochs} loss {record['train_loss']:.4f} "
        f"val bal-acc {record['val']['balanced_acc']:.4f} lr {record['lr']:.4g} "
        f"{duration(record['seconds'])} ETA {duration(eta_seconds)}"
    )


def open_tensorboard(folder: Path, first_epoch: int):
    """A SummaryWriter for ``folder``'s events; events of epochs from ``first_epoch`` on that an earlier, interrupted
    or replaced run wrote are dropped by TensorBoard's reader (purge_step), so a resumed curve has no duplicates."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ArgseError(
            f"runtime.tensorboard is on but the tensorboard package is not installed; {TENSORBOARD_FIX}"
        ) from None
    return SummaryWriter(str(Path(folder) / TENSORBOARD), purge_step=first_epoch)


class EpochLog:
    """The per-epoch reports of one :func:`argse.training.fit`: ``epoch(record)`` after each, ``close()`` at the end."""

    def __init__(self, name: str, epochs: int, start_epoch: int, folder: Path, out: Console | None, tb: bool):
        self.name, self.epochs, self.start_epoch, self.out = name, epochs, start_epoch, out
        self.seconds: list[float] = []
        self.writer = open_tensorboard(folder, start_epoch + 1) if tb else None
        self.said = self.started = time.monotonic()
        self.done = 0  # steps of the epoch under way

    def step(self, epoch: int, steps: int) -> None:
        """After each optimiser step: a line when a minute has passed without one, so a long epoch is never
        silent (the host only reads a clock: nothing waits for the device)."""
        self.done += 1
        done, now = self.done, time.monotonic()
        if self.out is not None and now - self.said >= HEARTBEAT_S:
            self.said = now
            line = f"{self.name}: epoch {epoch + 1}/{self.epochs} step {done}/{steps}, {duration(now - self.started)} into it"
            self.out.print(line, highlight=False, soft_wrap=True)

    def epoch(self, record: dict) -> None:
        self.said, self.started, self.done = time.monotonic(), time.monotonic(), 0
        self.seconds.append(record["seconds"])
        if self.out is not None:
            # The mean epoch of this process so far: a resumed run's first epochs say nothing of this machine.
            eta = sum(self.seconds) / len(self.seconds) * (self.epochs - record["epoch"])
            self.out.print(epoch_line(self.name, record, self.epochs, eta), highlight=False, soft_wrap=True)
        if self.writer is not None:
            step = record["epoch"]
            for key in ("train_loss", "lr", "seconds"):
                self.writer.add_scalar(f"train/{key}", record[key], step)
            for key, value in record["val"].items():
                if isinstance(value, int | float):
                    self.writer.add_scalar(f"val/{key}", value, step)
            self.writer.flush()  # a reader (tensorboard --logdir) sees each epoch as it ends

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
