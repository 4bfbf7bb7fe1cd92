"""Stage 7, write: manifests -> `manifests/<digest>.json` and `manifests/index.json`.

A manifest file is written once: an identical existing file is left alone, a differing one is
refused (someone edited it by hand). Every write goes to a temporary file in the same folder and
is renamed into place, so a reader never sees half a file.

The index maps each digest to its sources (spec, sweep member, top-level arguments, overrides,
the `expc search` trials it is: {search name: [trial numbers]}) and the files its evaluation read. It is outside the hash: moving a spec changes the index, never
a digest. Rebuilding a source moves that source to its new digest.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from expc.errors import ExpcError
from expc.project import Project

from .canonical import pretty

INDEX_SCHEMA = "expc/index/v1"


def write(manifests, project: Project) -> None:
    folder = project.manifests
    folder.mkdir(parents=True, exist_ok=True)
    pending = []
    for m in manifests:  # check every target before writing any
        path = folder / f"{m.digest}.json"
        body = pretty(m.data)
        if path.exists():
            if path.read_text(encoding="utf-8") != body:
                raise ExpcError(f"{project.relative(path)} exists with different content; it was edited "
                                "by hand. Remove it and build again.")
            continue
        pending.append((path, body))
    for path, body in pending:
        write_atomic(path, body)
    update_index(manifests, project)


def source_key(spec: str, member, tla: dict, sets: list) -> str:
    return json.dumps([spec, member, tla, sets], sort_keys=True)


def read_index(project: Project) -> dict:
    path = project.manifests / "index.json"
    if not path.exists():
        return {"schema": INDEX_SCHEMA, "manifests": {}}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ExpcError(f"not valid JSON: {err}", project.relative(path)) from None
    if index.get("schema") != INDEX_SCHEMA:
        raise ExpcError(f"unknown index format {index.get('schema')!r} (expected {INDEX_SCHEMA!r})",
                        project.relative(path))
    return index


def update_index(manifests, project: Project) -> None:
    index = read_index(project)
    entries = index["manifests"]
    rebuilt = {source_key(m.spec, m.member, m.tla, m.set) for m in manifests}
    searches: dict[str, dict] = {}  # a rebuilt source keeps the search trials it was
    for digest in list(entries):  # a rebuilt source leaves its previous digest
        sources = []
        for s in entries[digest]["sources"]:
            key = source_key(s["spec"], s.get("member"), s.get("tla", {}), s.get("set", []))
            if key not in rebuilt:
                sources.append(s)
            elif s.get("search"):
                searches[key] = s["search"]
        if sources:
            entries[digest]["sources"] = sources
        else:
            del entries[digest]
    for m in manifests:
        entry = entries.setdefault(m.digest, {"sources": []})
        source = {"spec": m.spec, "imports": m.imports}
        if m.member is not None:
            source["member"] = m.member
        if m.tla:
            source["tla"] = m.tla
        if m.set:
            source["set"] = m.set
        search = trials_of(searches.get(source_key(m.spec, m.member, m.tla, m.set), {}), m.search)
        if search:
            source["search"] = search
        entry["sources"].append(source)
        entry["sources"].sort(key=lambda s: source_key(s["spec"], s.get("member"), s.get("tla", {}), s.get("set", [])))
    index["manifests"] = dict(sorted(entries.items()))
    write_atomic(project.manifests / "index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")


def trials_of(search: dict, trial: tuple[str, int] | None) -> dict:
    """A source's `search` field, {search name: [trial numbers]}, with `trial` added: one
    manifest is every trial (of any search) that proposed the same arguments."""
    out = {name: list(numbers) for name, numbers in search.items()}
    if trial:
        name, number = trial
        out[name] = sorted(set(out.get(name, [])) | {number})
    return dict(sorted(out.items()))


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename it over `path`.

    The temporary name is unique per process and call (O_EXCL refuses a clash), which is cheaper
    than tempfile's random names when a sweep writes a thousand files.
    """
    global _temp_counter
    _temp_counter += 1
    tmp = path.parent / f".{path.name}.{os.getpid()}.{_temp_counter}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as err:  # a full or read-only disk: name the file being written, not the temporary
        if tmp.exists():  # (on a read-only file system even unlinking a missing file fails)
            tmp.unlink()
        raise OSError(err.errno, err.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_temp_counter = 0
