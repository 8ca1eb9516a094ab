"""Shared command-line plumbing: --config / --set, and one-sentence errors without tracebacks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rich.console import Console

from argse import distributed
from argse.config import RunConfig, load_run_config
from argse.errors import ArgseError


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", default=None, help="run config YAML (default: built-in demo settings)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted path, e.g. --set recipes.ce.epochs=5 (repeatable)",
    )
    return p


def load_config(args: argparse.Namespace) -> RunConfig:
    return load_run_config(args.config, args.overrides)


def console() -> Console:
    """Rich console; wide enough for the report tables when output goes to a file or a pipe."""
    quiet = distributed.rank() != 0  # under torchrun only rank 0 prints
    return Console(quiet=quiet) if sys.stdout.isatty() else Console(width=160, quiet=quiet)


def split_names(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; a user error prints one line on stderr and returns 2."""
    try:
        code = main(argv)
        distributed.shutdown()
        return code
    except ArgseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    except Exception as exc:
        lost = distributed.translate_errors(exc)
        if lost is None:
            raise
        print(f"error: {lost}", file=sys.stderr)
        return 2
