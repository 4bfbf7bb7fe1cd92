"""The manifest schema: `manifest.schema.json` (every field, each documented once in its
`description`), `deepspeed.schema.json` (generated from DeepSpeed's own config models by
scripts/generate_deepspeed_schema.py) and the `model` section of each arch (expc.archs), joined
into one Draft 2020-12 schema. `reference.py` renders it as the manifest reference (`expc
schema`, docs/manifest.md).

May import: the standard library and the rest of the shared ground (expc.archs) only.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def manifest_schema() -> dict:
    """The manifest schema with the DeepSpeed schema placed in its `deepspeed` property and each
    arch's model schema in its `model` property (`model.arch` picks one)."""
    # The package's own folder (setuptools installs package data beside the modules):
    # importlib.resources would cost ~9 ms of imports on every `expc build`.
    folder = Path(__file__).parent
    schema = json.loads((folder / "manifest.schema.json").read_text())
    deepspeed = json.loads((folder / "deepspeed.schema.json").read_text())
    description = schema["properties"]["deepspeed"]["description"]
    deepspeed.pop("$schema", None)
    deepspeed.pop("$id", None)
    schema["$defs"] = {**schema.get("$defs", {}), **deepspeed.pop("$defs", {})}
    schema["properties"]["deepspeed"] = {**deepspeed, "description": description}
    _add_archs(schema["properties"]["model"])
    return schema


def _add_archs(model: dict) -> None:
    """`model.arch` is one of the installed archs; each arch closes the section to its own fields."""
    from expc.archs import archs

    known = archs()
    model["properties"]["arch"]["enum"] = sorted(known)
    model["allOf"] = [{"if": {"properties": {"arch": {"const": name}}, "required": ["arch"]},
                       "then": known[name].schema()} for name in sorted(known)]
