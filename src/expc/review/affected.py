"""`expc affected`: lib (or spec) files -> the index sources whose evaluation read them.

The graph is the one recorded at evaluation: every file the import callback served, directly or
through other lib files, is listed under the source in the index (manifests/index/). go-jsonnet imports
lazily, so a lib file that a spec imports but never uses is not in its list, and rightly: no
change to that file can change the manifest. The index is as fresh as the last build; `expc
check` says when it is not.

A source whose spec has since been deleted is still affected (its committed manifests are), but
it is marked `deleted`: `expc affected --specs` leaves it out of the specs it prints for `expc
build`, and names it on stderr instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from expc.compile.write import read_index
from expc.errors import ExpcError
from expc.project import Project


@dataclass(frozen=True)
class Affected:
    spec: str
    member: str | None
    digest: str
    because: tuple[str, ...]  # which of the given files it read
    deleted: bool = False  # the spec is no longer in the project (the index still records it)

    @property
    def label(self) -> str:
        return f"{self.spec}[{self.member}]" if self.member else self.spec


def affected(paths, project: Project) -> list[Affected]:
    wanted = [_relative(p, project) for p in paths]
    out = []
    for digest, entry in read_index(project)["manifests"].items():
        for source in entry.get("sources", []):
            read = {source["spec"], *source.get("imports", [])}
            because = tuple(p for p in wanted if p in read)
            if because:
                deleted = not (project.root / source["spec"]).is_file()
                out.append(Affected(source["spec"], source.get("member"), digest, because, deleted))
    return sorted(out, key=lambda a: (a.spec, a.member or "", a.digest))


def _relative(path: str, project: Project) -> str:
    rel = project.relative(Path(path))
    if Path(rel).is_absolute():
        raise ExpcError(f"{path} is outside the project at {project.root}")
    if not (project.root / rel).exists() and not rel.startswith(("lib/", "specs/")):
        raise ExpcError(f"no such file: {path}")
    return rel
