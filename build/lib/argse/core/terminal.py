"""The rich console every command prints to: rank 0 only under torchrun, and wide enough for the
report tables when the output goes to a file or a pipe; plus the plain lines printed where no
progress bar can be drawn (nohup, a batch scheduler, CI)."""

from __future__ import annotations

import sys

from rich.console import Console

from argse.core import distributed


def console() -> Console:
    quiet = distributed.rank() != 0  # under torchrun only rank 0 prints
    return Console(quiet=quiet) if sys.stdout.isatty() else Console(width=160, quiet=quiet)


def log_lines(setting: str) -> bool:
    """Whether plain progress lines are printed: ``runtime.log_lines`` ('auto': when stdout is not a terminal,
    where a rich bar is drawn only once its work is done)."""
    return setting == "always" or (setting == "auto" and not sys.stdout.isatty())


def duration(seconds: float) -> str:
    """A duration as people read it: '8.2 s', '3 min 05 s', '2 h 14 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
