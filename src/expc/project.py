"""Where things live: the project root, its lib/, specs/, manifests/ and runs/ folders.

The root is found from a spec the way git finds a repository: the nearest ancestor folder that
holds `lib/` and `specs/` folders, else one whose `lib/` holds .libsonnet or .cue files (or, for a
spec outside any such folder, the spec's own folder).

The runs folder alone may live elsewhere (a scratch disk, a shared file system): `--runs-dir` on
the commands that read or write runs, else the EXPC_RUNS_DIR environment variable, else
<root>/runs. It is outside every manifest, so moving it changes no digest.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

RUNS_DIR_ENV = "EXPC_RUNS_DIR"


@dataclass(frozen=True)
class Project:
    root: Path
    runs_dir: Path | None = None  # --runs-dir; None: EXPC_RUNS_DIR, else <root>/runs

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def specs(self) -> Path:
        return self.root / "specs"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def runs(self) -> Path:
        if self.runs_dir is not None:
            return self.runs_dir
        configured = os.environ.get(RUNS_DIR_ENV)
        return Path(configured).resolve() if configured else self.root / "runs"

    def with_runs(self, runs_dir: Path | str | None) -> Project:
        """This project with its runs in `runs_dir` (relative to the working directory); None
        keeps the default (EXPC_RUNS_DIR, else <root>/runs)."""
        return dataclasses.replace(self, runs_dir=Path(runs_dir).resolve()) if runs_dir else self

    def relative(self, path: Path | str) -> str:
        """A path as users see it: relative to the root when inside it."""
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    def spec_files(self) -> list[Path]:
        if not self.specs.is_dir():
            return []
        return sorted([*self.specs.rglob("*.jsonnet"), *self.specs.rglob("*.cue")])


def find_project(start: Path | str | None = None) -> Project:
    """The project holding `start` (a file or folder; default: the working directory)."""
    start = Path(start or os.getcwd()).resolve()
    here = start if start.is_dir() else start.parent
    for folder in (here, *here.parents):
        if (folder / "lib").is_dir() and (folder / "specs").is_dir():
            return Project(folder)
    for folder in (here, *here.parents):
        if _holds_a_lib(folder / "lib"):
            return Project(folder)
    return Project(here)


def _holds_a_lib(folder: Path) -> bool:
    """A `lib/` with Jsonnet or CUE files in it: the system's /lib (beside a spec kept outside
    any project) is not a project's lib, and must not become importable."""
    try:
        return folder.is_dir() and any(p.suffix in (".libsonnet", ".cue") for p in folder.iterdir())
    except OSError:
        return False


def find_manifest(ref: str, project: Project | None = None) -> Path:
    """A manifest path, or a unique digest prefix (like git), -> the manifest's path.

    A path into the manifests folder that names no file, `manifests/b780cc20.json` or
    `manifests/b780cc20`, is a prefix written as a path: the help's examples are written that way.
    """
    from .errors import ExpcError

    path = Path(ref)
    if path.suffix == ".json" or os.sep in ref:
        if path.is_file():
            return path
        project = project or find_project()
        prefix = path.name.removesuffix(".json")
        if path.parent.resolve() != project.manifests.resolve() or not _is_digest_prefix(prefix):
            raise ExpcError(f"no such manifest: {ref}")
        ref = prefix
    project = project or find_project()
    if not _is_digest_prefix(ref):
        raise ExpcError(f"{ref!r} is neither a manifest file nor a digest prefix (4+ hex characters)")
    matches = sorted(project.manifests.glob(f"{ref}*.json"))
    if not matches:
        raise ExpcError(f"no manifest in {project.relative(project.manifests)}/ starts with {ref}")
    if len(matches) > 1:
        shown = ", ".join(m.stem[:12] for m in matches[:5])
        raise ExpcError(f"digest prefix {ref} is ambiguous: {shown}")
    return matches[0]


def _is_digest_prefix(text: str) -> bool:
    return len(text) >= 4 and all(c in "0123456789abcdef" for c in text)
