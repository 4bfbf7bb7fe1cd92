"""The manifest reference, generated from the schema's descriptions (`expc schema`)."""
from __future__ import annotations

from . import manifest_schema


def reference_markdown() -> str:
    schema = manifest_schema()
    lines = ["# Manifest reference", "", schema.get("description", ""), "",
             "Generated from the schema by `expc schema`; each field is documented once, there.", ""]
    _fields(schema, "", lines, schema)
    return "\n".join(lines) + "\n"


def _type(node: dict) -> str:
    if "const" in node:
        return f"`{node['const']!r}`".replace("'", '"')
    if "anyOf" in node:
        return " or ".join(_type(branch) for branch in node["anyOf"])
    if "enum" in node:
        return " \\| ".join(f"`{v}`".replace("'", '"') for v in node["enum"])
    kind = node.get("type", "any")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    bounds = [f"{op} {node[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                  ("maximum", "<="), ("exclusiveMaximum", "<"))
              if key in node]
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _fields(node: dict, prefix: str, lines: list, root: dict) -> None:
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        if "$ref" in child:
            ref = child["$ref"].split("/")[-1]
            child = {**root["$defs"][ref], **{k: v for k, v in child.items() if k != "$ref"}}
        path = f"{prefix}.{name}" if prefix else name
        flag = "" if name in required else " (optional)"
        lines.append(f"- `{path}`: {_type(child)}{flag}. {child.get('description', '')}".rstrip())
        if child.get("type") == "object" or "properties" in child:
            _fields(child, path, lines, root)
    # A section whose fields depend on one of its values (model.arch, data.source): each branch's
    # fields follow, led by the value that selects them.
    # Rules across fields (they carry an x-message) refuse values, they add no fields.
    for branch in node.get("allOf", []):
        if "then" in branch and "properties" in branch["then"] and "x-message" not in branch:
            _fields(branch["then"], prefix, lines, root)
