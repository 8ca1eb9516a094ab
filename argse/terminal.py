"""The rich console every command prints to: rank 0 only under torchrun, and wide enough for the
report tables when the output goes to a file or a pipe."""

from __future__ import annotations

import sys

from rich.console import Console

from argse import distributed


def console() -> Console:
    quiet = distributed.rank() != 0  # under torchrun only rank 0 prints
    return Console(quiet=quiet) if sys.stdout.isatty() else Console(width=160, quiet=quiet)
