"""YAML as argse reads it: safe, bounded in size, depth and alias expansion, every key once; and the
``--set`` overrides and merges of plain nested data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from argse.core import storage
from argse.core.errors import ArgseError


def unshare(data: Any) -> Any:
    """A copy in which no two places are one object.

    YAML anchors (``ce: &short {...}`` then ``logit_adjust: *short``) load as one shared dict, and
    ``copy.deepcopy`` keeps that sharing, so an override of one expert would change the others.
    """
    if isinstance(data, dict):
        return {k: unshare(v) for k, v in data.items()}
    if isinstance(data, list):
        return [unshare(v) for v in data]
    return copy.deepcopy(data)


# Limits of a config file: YAML anchors let 459 bytes expand to billions of nodes, deep nesting overflows
# the parser's recursion, and a config is a few kB.
MAX_YAML_BYTES = 1_000_000
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 50


class YamlRefused(Exception):
    """A YAML text that is refused before (or while) it is built: its message completes "... <where>: "."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping holding a key twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base' may be overridden on purpose
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    twice = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if twice:
                    raise YamlRefused(
                        f"key {key!r} appears twice in one mapping (line {key_node.start_mark.line + 1}); "
                        f"keep one of them"
                    )
        return super().construct_mapping(node, deep=deep)


def _check_shape(text: str) -> None:
    """Refuse nesting deeper than MAX_YAML_DEPTH and alias expansion beyond MAX_YAML_NODES, from the event
    stream (no recursion, nothing expanded), before anything is built."""
    sizes: dict[str, int] = {}  # anchor -> nodes it expands to
    stack: list[list] = [[None, 0]]  # [anchor, nodes so far] per open collection
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) - 1 > MAX_YAML_DEPTH:
                line = event.start_mark.line + 1
                raise YamlRefused(f"it nests deeper than {MAX_YAML_DEPTH} levels (line {line}); flatten it")
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, n = stack.pop()
            if anchor is not None:
                sizes[anchor] = n
        elif isinstance(event, yaml.ScalarEvent):
            n = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if any(event.anchor == anchor for anchor, _ in stack):
                line = event.start_mark.line + 1
                raise YamlRefused(f"alias *{event.anchor} refers to a collection that holds it (line {line})")
            n = sizes.get(event.anchor, 1)  # an undefined alias: the loader names it
        else:
            continue
        stack[-1][1] += n
        if stack[-1][1] > MAX_YAML_NODES:
            raise YamlRefused(
                f"its anchors and aliases expand to more than {MAX_YAML_NODES} values "
                f"(line {event.start_mark.line + 1}); write the values out or use fewer nested aliases"
            )


def load_yaml_text(text: str) -> Any:
    """YAML ``text`` as plain data, its shape checked and every mapping's keys distinct (YamlRefused otherwise)."""
    _check_shape(text)
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ArgseError(f"config file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ArgseError(f"config file {path} is {size} bytes; a config file may hold at most {MAX_YAML_BYTES} bytes")
    try:
        data = unshare(load_yaml_text(storage.read_text(path, "config file")))
    except YamlRefused as exc:
        raise ArgseError(f"config file {path} is refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise ArgseError(f"config file {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ArgseError(f"config file {path} must hold a mapping at the top level")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings (values parsed as YAML) to a nested dict copy."""
    data = unshare(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ArgseError(f"override '{item}' must look like section.key=value")
        try:
            value = load_yaml_text(raw)
        except YamlRefused as exc:
            raise ArgseError(f"override '{item}' is refused: {exc}") from None
        except yaml.YAMLError:
            value = raw
        node = data
        *parents, leaf = key.split(".")
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                section = ".".join(parents[: i + 1])
                raise ArgseError(f"override '{item}': '{section}' is not a section")
            node = child
        node[leaf] = value
    return data


def deep_merge(base: dict, extra: dict) -> dict:
    out = unshare(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else unshare(v)
    return out
