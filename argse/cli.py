"""Shared command-line plumbing: --config / --set / --print-config, one-sentence errors without tracebacks,
and the time a command took."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from safetensors import SafetensorError

from argse.config.loading import dump_yaml, load_run_config
from argse.config.sections import RunConfig, named_twice
from argse.core import distributed, storage
from argse.core.errors import ArgseError
from argse.core.terminal import console  # noqa: F401  (the entry points print through cli.console)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--config",
        default=None,
        help="run config YAML; its relative paths start at its folder (default: the built-in settings, run name default)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted path, e.g. --set recipes.ce.epochs=5 (repeatable)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config and each expert's recipe with where every value came from, then stop",
    )
    return p


class Printed(Exception):
    """--print-config printed the config: the command stops there, successfully."""


def load_config(args: argparse.Namespace, values: dict | None = None) -> RunConfig:
    """The run config of --config and --set, with ``values`` (nested, from the command's own options) on top;
    every field is validated by argse.config, so the entry points check none themselves. With
    --print-config it is printed and the command stops (``run`` returns 0)."""
    cfg = load_run_config(args.config, args.overrides, values)
    if getattr(args, "print_config", False):
        print(describe_config(cfg, args, split_names(getattr(args, "experts", None)) or cfg.experts), end="")
        raise Printed
    return cfg


def describe_config(cfg: RunConfig, args: argparse.Namespace, experts: list[str]) -> str:
    """The resolved run config as YAML, then each expert's recipe, every value commented with its origin."""
    from argse.config.recipe_layers import resolve_recipe
    from argse.experts.base import get_expert  # the registry, filled once the plugins are loaded

    source = f"{args.config}" if args.config else "the built-in defaults"
    lines = [f"# resolved config of {source}{''.join(' --set ' + s for s in args.overrides)}", dump_yaml(cfg)]
    for name in experts:
        recipe, origins = resolve_recipe(get_expert(name), cfg)
        lines.append(f"# recipe of {name}: value  # where it came from")
        lines.append(f"{name}:")
        lines += [f"  {key}: {json.dumps(value)}  # {origins[key]}" for key, value in _flat(recipe.model_dump())]
    return "\n".join(lines) + "\n"


def _flat(data: dict, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for k, v in data.items():
        out += _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return out


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


def file_system_error(exc: Exception) -> ArgseError | None:
    """An unwritable folder or a full disk met outside argse.core.storage, as one sentence naming the path."""
    code = storage.os_errno(exc)
    if code not in storage.FS_ERRORS:
        return None
    path = getattr(exc, "filename", None) or "a file"
    return storage.fs_error(path, code)


def elapsed(seconds: float) -> str:
    """``4.2s``, ``1m23s``, ``2h05m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main`` and say on stderr how long it took; a user error prints one line on stderr and returns 2."""
    start = time.perf_counter()
    try:
        code = main(argv)
        first = distributed.rank() == 0  # before shutdown, after which every rank reads as 0
        distributed.shutdown()
        if first:
            print(f"done in {elapsed(time.perf_counter() - start)}", file=sys.stderr)
        return code
    except Printed:
        return 0
    except distributed.StoppedByPeer as exc:  # the rank that failed has said why; one line more, from rank 0
        if distributed.rank() == 0:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except ArgseError as exc:
        if distributed.speaks_for_the_job():
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing unfinished was published: rerun the same command to continue", file=sys.stderr)
        return 130
    except (OSError, SafetensorError) as exc:
        known = file_system_error(exc) or distributed.translate_errors(exc)
        if known is None:
            raise
        if distributed.speaks_for_the_job():
            print(f"error: {known}", file=sys.stderr)
        return 2
    except Exception as exc:
        lost = distributed.translate_errors(exc)
        if lost is None:
            raise
        print(f"error: {lost}", file=sys.stderr)
        return 2
