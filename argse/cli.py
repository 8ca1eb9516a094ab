"""Shared command-line plumbing: --config / --set, and one-sentence errors without tracebacks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from safetensors import SafetensorError

from argse import distributed, runlock, storage
from argse.config import RunConfig, load_run_config, named_twice
from argse.errors import ArgseError
from argse.terminal import console  # noqa: F401  (the entry points print through cli.console)


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


def load_config(args: argparse.Namespace, values: dict | None = None) -> RunConfig:
    """The run config of --config and --set, with ``values`` (nested, from the command's own options) on top;
    every field is validated by argse.config, so the entry points check none themselves."""
    return load_run_config(args.config, args.overrides, values)


def split_names(text: str | None) -> list[str] | None:
    """``a,b`` -> ['a', 'b']; a name given twice is an error (it would be trained or mixed twice)."""
    if not text:
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    check_unique(names, f"'{text}'")
    return names


def check_unique(names: list[str], where: str) -> None:
    twice = named_twice(names)
    if twice is not None:
        raise ArgseError(f"'{twice}' is named twice in {where}; name each expert once")


def lock_run(cfg: RunConfig, command: str) -> None:
    """Hold the run's lock (outputs/NAME/.lock) until this process ends: one writer per run name, and no
    reader beside it."""
    runlock.lock_run(cfg.out_dir, command)


def lock_run_shared(cfg: RunConfig, command: str) -> None:
    """Hold the run's lock as a reader until this process ends: readers run side by side, but not beside
    a writer, so no file is replaced while they read it."""
    runlock.lock_run(cfg.out_dir, command, shared=True)


def file_system_error(exc: Exception) -> ArgseError | None:
    """An unwritable folder or a full disk met outside argse.storage, as one sentence naming the path."""
    code = storage.os_errno(exc)
    if code not in storage.FS_ERRORS:
        return None
    path = getattr(exc, "filename", None) or "a file"
    return storage.fs_error(path, code)


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
    except (OSError, SafetensorError) as exc:
        known = file_system_error(exc) or distributed.translate_errors(exc)
        if known is None:
            raise
        print(f"error: {known}", file=sys.stderr)
        return 2
    except Exception as exc:
        lost = distributed.translate_errors(exc)
        if lost is None:
            raise
        print(f"error: {lost}", file=sys.stderr)
        return 2
    finally:
        runlock.release_all()
