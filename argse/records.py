"""Reading JSON side files that argse wrote, validating every field before it is used.

A reader opens a file with :func:`read_record` (missing file, bad JSON, wrong format tag: one
sentence) and takes each field through :meth:`Record.get` with a check such as ``number()`` or
``list_of(number(), length=3)``. A wrong field is one sentence naming the file, the field, what
it should be and how to make the file again, so no reader trusts a file as it found it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from argse import storage
from argse.errors import ArgseError

Check = Callable[[Any], Any]  # returns the value (possibly converted) or raises ValueError("must be ...")


def read_record(path: Path, fmt: str, what: str, fix: str) -> Record:
    """The JSON object of ``path`` whose ``format`` is ``fmt``; ``what`` names the file, ``fix`` says how to remake it."""
    if not path.is_file():
        raise ArgseError(f"{what} {path} is missing; {fix}")
    try:
        data = json.loads(storage.read_text(path, what))
    except json.JSONDecodeError as exc:
        raise ArgseError(f"{what} {path} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise ArgseError(f"{what} {path} does not hold a JSON object; {fix}")
    if data.get("format") != fmt:
        raise ArgseError(f"{path} is not an {fmt} file (format {data.get('format')!r}); {fix}")
    return Record(data, path, fix)


class Record:
    """One JSON object read from ``path``; ``get`` checks a field and names file and field when it is wrong."""

    def __init__(self, data: dict, path: Path, fix: str, prefix: str = "") -> None:
        self.data, self.path, self.fix, self.prefix = data, path, fix, prefix

    def get(self, key: str, check: Check, default: Any = ...) -> Any:
        if key not in self.data:
            if default is not ...:
                return default
            raise ArgseError(f"{self.path} has no field '{self.prefix}{key}'; {self.fix}")
        try:
            return check(self.data[key])
        except ValueError as exc:
            raise ArgseError(f"{self.path}: field '{self.prefix}{key}' {exc}; {self.fix}") from None

    def section(self, key: str) -> Record:
        """The object under ``key`` as a Record of its own (field names are reported as key.field)."""
        return Record(self.get(key, mapping()), self.path, self.fix, f"{self.prefix}{key}.")

    def fail(self, message: str) -> ArgseError:
        """An error about the whole file (fields that disagree with each other or with the run)."""
        return ArgseError(f"{self.path}: {message}; {self.fix}")


# ---------------------------------------------------------------- checks


def _fail(text: str, value: Any) -> None:
    shown = repr(value)
    raise ValueError(f"must be {text}, got {shown[:60] + '...' if len(shown) > 60 else shown}")


def number(lo: float = -math.inf, hi: float = math.inf, *, above: float | None = None) -> Check:
    """A finite number in [lo, hi] (and > ``above`` when given)."""

    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            _fail("a finite number", v)
        if not lo <= v <= hi or (above is not None and v <= above):
            rng = f"> {above:g}" if above is not None else f"in [{lo:g}, {hi:g}]"
            _fail(f"a number {rng}", v)
        return float(v)

    return check


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            _fail("an integer", v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            _fail(f"an integer >= {lo}" if hi is None else f"an integer <= {hi}" if lo is None else
                  f"an integer in [{lo}, {hi}]", v)  # fmt: skip
        return v

    return check


def string(choices: tuple[str, ...] | None = None) -> Check:
    def check(v: Any) -> str:
        if not isinstance(v, str) or (choices is not None and v not in choices):
            _fail("a string" if choices is None else f"one of {', '.join(choices)}", v)
        return v

    return check


def mapping() -> Check:
    def check(v: Any) -> dict:
        if not isinstance(v, dict):
            _fail("an object", v)
        return v

    return check


def list_of(item: Check, length: int | None = None, *, nonempty: bool = False) -> Check:
    def check(v: Any) -> list:
        if not isinstance(v, list):
            _fail("a list", v)
        if length is not None and len(v) != length:
            _fail(f"a list of {length} values", f"{len(v)} values")
        if nonempty and not v:
            _fail("a non-empty list", v)
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(x))
            except ValueError as exc:
                raise ValueError(f"[{i}] {exc}") from None
        return out

    return check
