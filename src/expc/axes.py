"""Sweep members' names <-> their axis values.

Every sweep method of lib/sweep.libsonnet (and `--sweep`) names a member by the values it set,
`axis=label` joined by commas, in a fixed order: 'lr=1e-3,model=cpu,seed=2'. The name is the
only place the values of a knob (a hidden field) survive compilation, so the executor (W&B
config), `expc build`'s preview and `expc report` all read the axes back from it. A name that is
not of that shape (`sweep.variants`' hand-picked names) has no axes.
"""
from __future__ import annotations

import json


def axis_values(name: str | None) -> dict[str, str] | None:
    """'lr=1e-3,seed=2' -> {'lr': '1e-3', 'seed': '2'}; None for a name that is not axis=label pairs."""
    if not name:
        return None
    values = {}
    for part in name.split(","):
        axis, sep, label = part.partition("=")
        if not sep or not axis or axis in values:
            return None
        values[axis] = label
    return values


def axes_table(names: list[str | None]) -> dict[str, list[str]] | None:
    """Each axis with its distinct labels, numbers by value and then text; None unless every
    name has axes."""
    table: dict[str, dict[str, None]] = {}  # axis -> its labels, as an ordered set (a list took minutes at 100k)
    for name in names:
        values = axis_values(name)
        if values is None:
            return None
        for axis, label in values.items():
            table.setdefault(axis, {})[label] = None
    return {axis: sorted(labels, key=_order) for axis, labels in table.items()} or None


def _order(label: str):
    value = typed(label)
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, label)


def typed(label: str):
    """A label as a value for a table or a plot: a number when it reads as JSON number, else the text."""
    try:
        value = json.loads(label)
    except ValueError:
        return label
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else label


def replica_group(name: str, seed_axis: str = "seed") -> str:
    """The member's name without its seed: what seed replicas share."""
    values = axis_values(name)
    if values is None or seed_axis not in values:
        return name
    return ",".join(f"{k}={v}" for k, v in values.items() if k != seed_axis)
