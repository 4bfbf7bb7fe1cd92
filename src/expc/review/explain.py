"""`expc explain`: a manifest or spec, and a JSON path (or none: every leaf) -> provenance.

A manifest is traced back to its spec through the index (manifests/index/); the spec is evaluated again
and must still produce that very manifest (otherwise the answer would describe another one).
"""
from __future__ import annotations

from pathlib import Path

from expc.compile.provenance import Explanation, Source, explain, parse_path
from expc.errors import ExpcError
from expc.project import find_manifest, find_project


def explain_target(target: str, json_path: str | None, member: str | None = None,
                   tla: dict | None = None, sets=()) -> list[Explanation]:
    if target.endswith(".cue"):
        raise ExpcError(f"{target}: expc explain reads Jsonnet specs; a CUE spec's errors carry CUE's own "
                        "positions instead (docs/cue.md)")
    if target.endswith((".jsonnet", ".libsonnet")):
        source, data = _spec_source(target, member, tla or {}, list(sets))
    else:
        source, data = _manifest_source(target)
    if json_path:
        return [explain(source, parse_path(json_path))]
    return [explain(source, path) for path in _leaf_paths(data)]


def _spec_source(target: str, member: str | None, tla: dict, sets: list):
    from expc.compile import compile_spec

    project = find_project(target)
    manifests = compile_spec(target, project, tla, sets)
    members = {m.member: m for m in manifests}
    if member not in members:
        known = ", ".join(repr(m) for m in members if m is not None)
        if member is None:
            raise ExpcError(f"{project.relative(target)} is a sweep: choose one with --member ({known})")
        raise ExpcError(f"{project.relative(target)} has no member {member!r}"
                        + (f" (members: {known})" if known else " (it is not a sweep)"))
    return Source(Path(target), project, member, tla, sets), members[member].data


def _manifest_source(target: str):
    from expc.compile import compile_spec
    from expc.compile.canonical import load_manifest
    from expc.compile.write import read_index

    project = find_project()
    path = find_manifest(target, project)
    data, digest = load_manifest(path)
    sources = read_index(project)["manifests"].get(digest, {}).get("sources", [])
    if not sources:
        raise ExpcError(f"{project.relative(path)}: the index (manifests/index/) names no spec for it, so its "
                        "provenance is unknown")
    # A manifest built by a Jsonnet spec and its CUE twin is explained through the Jsonnet one.
    jsonnet = [s for s in sources if not s["spec"].endswith(".cue")]
    if not jsonnet:
        raise ExpcError(f"{project.relative(path)} was built only from CUE specs "
                        f"({', '.join(s['spec'] for s in sources)}); expc explain reads Jsonnet specs")
    s = jsonnet[0]
    spec = project.root / s["spec"]
    if not spec.is_file():
        raise ExpcError(f"{project.relative(path)} was built from {s['spec']}, which no longer exists")
    rebuilt = {m.member: m.digest for m in compile_spec(spec, project, s.get("tla", {}), s.get("set", []))}
    if rebuilt.get(s.get("member")) != digest:
        raise ExpcError(f"{project.relative(path)} is stale: {s['spec']} now compiles to another manifest "
                        f"(`expc check` says more); explain the spec instead")
    return Source(spec, project, s.get("member"), s.get("tla", {}), s.get("set", [])), data


def _leaf_paths(data, prefix=()):
    if isinstance(data, dict) and data:
        for key in sorted(data):
            yield from _leaf_paths(data[key], (*prefix, key))
    else:
        yield prefix
