"""Stage 2a, override: `--set path=value` applied to a document before validation.

A path is dotted keys with optional list indexes (`model.n_layer`, `deepspeed.optimizer.params.lr`,
`logging.wandb.tags[0]`). The value is JSON when it parses as JSON, else a string. The parent of
the path must exist; the key itself may be new (the schema then judges it), so an override is
checked like any other value and changes the digest like any other value.
"""
from __future__ import annotations

import copy
import json
import math
import re

from expc.errors import ExpcError, did_you_mean

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_set(items) -> list[tuple[tuple, object, str]]:
    """`path=value` strings -> [(path parts, value, original text)]."""
    out = []
    for item in items:
        path, sep, text = item.partition("=")
        parts = _parse_path(path) if sep else None
        if not parts:
            raise ExpcError(f"--set {item!r}: expected path=value, e.g. model.n_layer=12")
        out.append((parts, parse_value(text, f"--set {item!r}"), item))
    return out


def parse_value(text: str, what: str):
    """A command-line value: JSON when it parses as JSON, else the string itself.

    JSON has no NaN or Infinity, and a number too big for a double (1e400) would silently become
    one: both are refused here, naming `what` (e.g. "--set 'model.dropout=1e400'").
    """
    def refuse_constant(token):
        raise ExpcError(f"{what}: {token} is not a finite number")

    def finite_float(token):
        value = float(token)
        if not math.isfinite(value):
            raise ExpcError(f"{what}: {token} is too large for a 64-bit float (at most about 1.8e308)")
        return value

    try:
        return json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
    except ValueError:
        return text


def _parse_path(path: str) -> tuple | None:
    parts, pos = [], 0
    for match in _STEP.finditer(path):
        if match.start() != pos and path[pos:match.start()] != ".":
            return None
        parts.append(match[1] if match[1] is not None else int(match[2]))
        pos = match.end()
    return tuple(parts) if pos == len(path) and parts and isinstance(parts[0], str) else None


def apply_overrides(document, overrides) -> object:
    """A copy of `document` with every override applied in order."""
    if not overrides:
        return document
    document = copy.deepcopy(document)
    for parts, value, item in overrides:
        node = document
        for depth, key in enumerate(parts[:-1]):
            node = _step(node, key, parts[: depth + 1], item)
        last = parts[-1]
        if isinstance(node, dict) and isinstance(last, str):
            node[last] = value
        elif isinstance(node, list) and isinstance(last, int):
            if last >= len(node):
                raise ExpcError(f"--set {item}: index {last} is past the end of {_show(parts[:-1])} "
                                f"(length {len(node)})")
            node[last] = value
        else:
            raise ExpcError(f"--set {item}: {_show(parts[:-1])} is {_kind(node)}, not "
                            f"{'a list' if isinstance(last, int) else 'an object'}")
    return document


def _step(node, key, walked, item):
    if isinstance(node, dict) and isinstance(key, str):
        if key not in node:
            raise ExpcError(f"--set {item}: no {_show(walked)} in the document{did_you_mean(key, node)}")
        return node[key]
    if isinstance(node, list) and isinstance(key, int):
        if key >= len(node):
            raise ExpcError(f"--set {item}: index {key} is past the end of {_show(walked[:-1])} "
                            f"(length {len(node)})")
        return node[key]
    raise ExpcError(f"--set {item}: {_show(walked[:-1])} is {_kind(node)}, not "
                    f"{'a list' if isinstance(key, int) else 'an object'}")


def _kind(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "null")


def _show(parts) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
