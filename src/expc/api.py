"""The public Python API: what the command line does, as functions (docs/api.md).

    expc.build(spec, tla=None, set=(), write=True) -> [Manifest]   compile (and write) a spec
    expc.load(manifest_or_digest)                  -> Manifest     a committed manifest, verified
    expc.run(target, ...)                          -> [Run]        train, as `expc run` does

Every user mistake raises the one `expc.ExpcError`, with its problems and their locations. This
module sits at the top, beside the CLI: it calls one stage function per verb, and imports each
stage inside the function that needs it, so `import expc` stays light (no Jsonnet, no torch).
"""
from __future__ import annotations

import json
from pathlib import Path

from expc.errors import ExpcError


def build(spec, tla: dict | None = None, set=(), write: bool = True, engine: str = "gojsonnet",
          sweep=()) -> list:
    """Compile a spec (or a list of specs) into manifests, exactly as `expc build` does.

    `tla` maps top-level argument names to values (Python values, or `name=value` strings as on the
    command line); `set` is `path=value` strings (as `--set`) or a dict {path: value}; `sweep` is
    `path=a,b` strings (as `--sweep`), one grid axis each. With
    `write=True` the manifests are written to manifests/<digest>.json and the index updated
    (nothing is written unless every spec compiles), and each Manifest's `.path` names its file;
    with `write=False` nothing is written and `.path` is None.
    """
    from expc.compile import build as build_specs
    from expc.compile import compile_spec

    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not specs:
        raise ExpcError("build() needs a spec")
    tla_values, set_items = _tla(tla), _set_items(set)
    if write:
        return build_specs(specs, tla_values, set_items, engine=engine, sweeps=list(sweep))
    manifests, problems = [], []
    for one in specs:  # like build_specs: every failing spec's problems reported together
        try:
            manifests += compile_spec(one, tla=tla_values, sets=set_items, engine=engine, sweeps=list(sweep))
        except ExpcError as err:
            problems += err.problems
    if problems:
        raise ExpcError(problems)
    return manifests


def load(manifest_or_digest):
    """A manifest file or a unique digest prefix -> its Manifest, digest verified (a file whose
    content does not hash to its name is refused). Its source (spec, member, tla, set) comes from
    the index (manifests/index/); `.spec` is None when the index does not know it."""
    from expc.compile import Manifest
    from expc.compile.canonical import load_manifest
    from expc.compile.write import read_index
    from expc.project import find_manifest, find_project

    if isinstance(manifest_or_digest, Manifest):
        manifest_or_digest = _written(manifest_or_digest)
    path = find_manifest(str(manifest_or_digest))
    data, digest = load_manifest(path)
    sources = read_index(find_project(path))["manifests"].get(digest, {}).get("sources", [])
    source = sources[0] if sources else {}
    return Manifest(data, digest, source.get("spec"), source.get("member"), dict(source.get("tla", {})),
                    list(source.get("set", [])), list(source.get("imports", [])), path=path)


def run(target, tla: dict | None = None, set=(), dry_run: bool = False, rerun: bool = False,
        master_port: int = 29500, runs_dir: Path | str | None = None) -> list:
    """Train, as `expc run` does, and return one Run per manifest (a sweep's members in order).

    `target` is a Manifest (as `build` or `load` return it), a manifest file, a digest prefix, a
    spec (built first; `tla` and `set` shape it, and are refused for a manifest), or a list of
    these. Progress and the outcome are printed as on the command line. A failed run raises
    ExpcError; a run stopped by Ctrl-C raises KeyboardInterrupt after its checkpoint is saved.
    `runs_dir` puts the runs in <runs_dir>/<digest>/ (default: EXPC_RUNS_DIR, else runs/).
    """
    from expc.compile import Manifest
    from expc.launch.run import build_targets, run_all, run_of

    targets = target if isinstance(target, (list, tuple)) else [target]
    targets = [_written(t) if isinstance(t, Manifest) else str(t) for t in targets]
    refs, _ = build_targets(targets, _tla(tla), _set_items(set))
    runs_dir = Path(runs_dir) if runs_dir else None
    code = run_all(refs, dry_run=dry_run, rerun=rerun, master_port=master_port, runs_dir=runs_dir)
    if code == 130:
        raise KeyboardInterrupt
    return [run_of(ref, runs_dir) for ref in refs]


def _written(manifest) -> str:
    if manifest.path is None:
        raise ExpcError(f"manifest {manifest.short} was built with write=False: build it with write=True "
                        "(or `expc build`) to run or load it")
    return str(manifest.path)


def _tla(tla) -> dict:
    if tla is None:
        return {}
    if isinstance(tla, dict):
        return dict(tla)
    from expc.compile.evaluate import parse_tla

    return parse_tla(list(tla))


def _set_items(items) -> list[str]:
    """`--set` items as the pipeline takes them: `path=value` strings."""
    if isinstance(items, str):
        raise ExpcError(f"set={items!r}: give a list of path=value strings (or a dict), not one string")
    if isinstance(items, dict):
        return [f"{path}={json.dumps(value)}" for path, value in items.items()]
    return [str(item) for item in items]


__all__ = ["ExpcError", "build", "load", "run"]
