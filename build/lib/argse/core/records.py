"""Reading the JSON side files argse writes into typed models (pydantic): one validating call per file.

Each file format declares its model, with ranges on the fields and cross-field checks as validators; a file
that does not fit is one sentence naming the file, the field, what was wrong and how to make the file again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from argse.core import storage
from argse.core.errors import ArgseError

M = TypeVar("M", bound=BaseModel)

# Numbers as argse writes them: finite floats (NaN and infinities refused), non-negative integers.
Finite = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, strict=True)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Record(BaseModel):
    """A side file's model: fields argse added later are kept (``extra``), and nothing is coerced silently."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


def read_model(path: Path, model: type[M], what: str, fix: str) -> M:
    """``path`` read into ``model``; a missing file, bad JSON or a field that does not fit is one sentence."""
    if not path.is_file():
        raise ArgseError(f"{what} {path} is missing; {fix}")
    text = storage.read_text(path, what)
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise ArgseError(f"{what} {path}: {problem(exc)}; {fix}") from None


def validate(data: object, model: type[M], where: str, fix: str) -> M:
    """``data`` (already parsed) into ``model``, with the same sentence as :func:`read_model`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ArgseError(f"{where}: {problem(exc)}; {fix}") from None


def problem(exc: ValidationError) -> str:
    """The first error of a validation, as 'field 'a.b[2]' <what is wrong>, got <value>'."""
    err = exc.errors(include_url=False)[0]
    if err["type"] == "json_invalid":
        return f"is not valid JSON ({err['msg'].removeprefix('Invalid JSON: ')})"
    field = field_name(err["loc"])
    if err["type"] == "missing":
        return f"has no field '{field}'"
    message = err["msg"].removeprefix("Value error, ")
    if not field:
        return message
    shown = repr(err.get("input"))
    return (
        f"field '{field}': {message[0].lower() + message[1:]}, got {shown[:60] + '...' if len(shown) > 60 else shown}"
    )


def field_name(loc: tuple) -> str:
    """('rules', 'gating', 'chow', 4, 'alpha') -> 'rules.gating.chow[4].alpha'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
