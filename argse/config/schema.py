"""The typed models every config section, recipe and dataset option set is declared with (pydantic), and the one
sentence a bad value becomes.

A model is strict (YAML's ``true`` is no integer, ``"5"`` no number), refuses unknown keys and non-finite
numbers, and declares its ranges on the fields (``Field(ge=1)``) and its cross-field checks in a
``model_validator``; :func:`parse` turns pydantic's first error into one sentence that names the dotted key.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from argse.core.errors import ArgseError
from argse.core.seeds import MAX_SEED


class Section(BaseModel):
    """Base of every config model: strict types, no unknown keys, finite numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, use_attribute_docstrings=True)


def seed_field(default: int | None = 0) -> Any:
    """A seed's field: None (where allowed: derived) or a base seed every random stream can use."""
    return Field(default, ge=0, le=MAX_SEED)


KINDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "float_type": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
BOUNDS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"), "less_than_equal": ("le", "<="),
          "less_than": ("lt", "<")}  # fmt: skip

# Keys that sat flat under ``data`` before each dataset had its own section, and where they went, so that an
# older config is told where to move a key instead of only that it is unknown.
MOVED_DATA_KEYS = {
    **{f"synthetic_{k}": f"synthetic_lt.{k}" for k in ("classes", "max_per_class", "test_per_class", "image_size")},
    **{k: f"list_lt.{k}" for k in ("train_list", "test_lists", "image_size", "resize")},
    "download": "cifar10_lt.download (or cifar100_lt.download)",
    "cache_dir": "imagefolder_lt.cache_dir",
}


def dotted(where: str, loc: tuple) -> str:
    parts = [where] if where else []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]"]
        else:
            parts.append(str(part))
    return ".".join(parts) or "<root>"


def model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model that holds the key at ``loc`` (None where a path leaves the models)."""
    for part in loc:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        inner = field.annotation if field else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        cls = inner
    return cls


def unknown_key(cls: type[BaseModel], loc: tuple, where: str) -> str:
    key, holder = str(loc[-1]), model_at(cls, loc[:-1])
    path = dotted(where, loc)
    names = list(holder.model_fields) if holder else []
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean '{dotted(where, (*loc[:-1], close[0]))}'?)" if close else ""
    if path.endswith(f"data.{key}") and key in MOVED_DATA_KEYS:
        hint = f" (it moved to its dataset's section: '{dotted(where, (*loc[:-1], MOVED_DATA_KEYS[key]))}')"
    more = getattr(holder, "more_keys", "")
    valid = ", ".join(n for n in names if n != "sections")
    return f"unknown config key '{path}'{hint}; valid keys: {valid}{more}"


def sentence(cls: type[BaseModel], error: dict, where: str, noun: str = "config key") -> str:
    """One sentence for pydantic's ``error`` in a ``cls`` read from config key ``where`` (``noun``: what the
    values are called, e.g. "argument" for a Python call's)."""
    kind, loc, value = error["type"], error["loc"], error.get("input")
    path = dotted(where, loc)
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return unknown_key(cls, loc, where)
    if kind == "value_error":  # a model's or a field's validator: its own sentence, which names the field
        holder = model_at(cls, loc[:-1]) if loc else None
        if holder is not None and loc[-1] in holder.model_fields and model_at(holder, loc[-1:]) is None:
            loc = loc[:-1]  # a field's validator: its sentence names the field
        section = dotted(where, loc) if loc or where else ""
        message = str(error["ctx"]["error"])
        if noun != "config key":
            return f"invalid {noun} '{section}': {message}" if section else f"invalid {noun}: {message}"
        return f"invalid config in '{section}': {message}" if section else f"invalid config: {message}"
    if kind == "literal_error":
        return f"{noun} '{path}' is {value!r}; choose one of {error['ctx']['expected'].replace(' or ', ', ')}"
    if kind in BOUNDS:
        key, op = BOUNDS[kind]
        bound = error["ctx"][key]
        return f"{noun} '{path}' must be {op} {bound if isinstance(bound, int) else format(bound, 'g')}, got {value!r}"
    if kind == "too_short":
        n = error["ctx"]["min_length"]
        return f"{noun} '{path}' must hold at least {n} value{'s' * (n != 1)}, got {value!r}"
    if kind in KINDS:
        return f"{noun} '{path}' must be {KINDS[kind]}, got {value!r}"
    return f"{noun} '{path}': {error['msg']}, got {value!r}"


def parse(cls: type[BaseModel], data: Any, where: str = "", noun: str = "config key") -> Any:
    """``cls`` from plain data (``None``: its defaults), or one sentence naming the first bad key (``noun``: what
    the keys are called in it)."""
    try:
        return cls.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise ArgseError(sentence(cls, exc.errors()[0], where, noun)) from None


def changed(obj: BaseModel, **changes: Any) -> Any:
    """A validated copy of ``obj`` with ``changes`` (pydantic's ``model_copy`` would skip validation)."""
    return parse(type(obj), {**obj.model_dump(), **changes})
