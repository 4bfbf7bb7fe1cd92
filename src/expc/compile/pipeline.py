"""The pipeline: spec -> documents -> manifests -> files. Each stage lives in its own module:

    evaluate     (evaluate.py)   spec file -> document, hermetic go-jsonnet
    split        (here)          document -> one experiment, or the members of a sweep
    override     (overrides.py)  `--set path=value` applied to each member
    pin          (pin.py)        every file the run reads pinned by sha256 (base model, data)
    validate     (validate.py)   JSON Schema + semantic rules, every problem at once
    canonicalize (canonical.py)  rounded floats -> RFC 8785 bytes -> sha256 digest
    write        (write.py)      manifests/<digest>.json + manifests/index.json, atomically
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from expc.errors import ExpcError, Problem
from expc.project import Project, find_project

from . import canonical
from .evaluate import evaluate
from .overrides import apply_overrides, parse_set
from .pin import pin
from .validate import validate


@dataclass
class Manifest:
    """One compiled experiment and where it came from (the provenance is outside the hash)."""

    data: dict
    digest: str
    spec: str  # project-relative path of the spec
    member: str | None = None  # sweep member name; None for a single experiment
    tla: dict = field(default_factory=dict)
    set: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        return self.digest[:12]

    @property
    def label(self) -> str:
        return f"{self.spec}[{self.member}]" if self.member else self.spec


def compile_spec(spec: Path | str, project: Project | None = None, tla: dict | None = None,
                 sets=(), engine: str = "gojsonnet", fit_check: bool = True) -> list[Manifest]:
    """Compile one spec to its manifests, in memory. Raises ExpcError; writes nothing.

    `fit_check=False` leaves out the memory-fit rule only (`expc plan` shows a run that does not
    fit rather than refusing it); such manifests are never written."""
    spec = Path(spec)
    project = project or find_project(spec)
    overrides = parse_set(sets)
    evaluation = evaluate(spec, project, tla, engine)
    spec_name = project.relative(spec)
    manifests, problems = [], []
    for member, document in split(evaluation.document, spec_name):
        try:
            document = apply_overrides(document, overrides)
            document = pin(document, project)
            validate(document, origin=_origin(spec, project, member, tla, sets), fit_check=fit_check)
            data = canonical.canonicalize(document)
        except ExpcError as err:
            where = f"{spec_name}[{member}]" if member else spec_name
            problems += [Problem(p.message, f"{where} {p.location}" if p.location else where, p.origin)
                         for p in err.problems]
            continue
        manifests.append(Manifest(data, canonical.digest(data), spec_name, member, dict(tla or {}),
                                  list(sets), evaluation.imports))
    if problems:
        raise ExpcError(problems)
    _refuse_identical_members(manifests)
    return manifests


def _origin(spec, project, member, tla, sets):
    """Where a faulty value was set, for validate's messages; provenance.py is loaded (and pays
    for its probes) only when there is a problem to explain."""
    def origin(location):
        from .provenance import Source, origin_finder

        return origin_finder(Source(spec, project, member, dict(tla or {}), list(sets)))(location)
    return origin


def split(document, spec_name: str) -> list[tuple[str | None, dict]]:
    """An experiment has a `schema` field; a sweep is an object of member name -> experiment."""
    if isinstance(document, dict) and "schema" in document:
        return [(None, document)]
    shape = "a sweep (an object of member name -> experiment)"
    if not isinstance(document, dict):
        raise ExpcError(f"the spec returned {_kind(document)}; expected an experiment (an object "
                        f"with a 'schema' field) or {shape}", spec_name)
    if not document:
        raise ExpcError(f"the spec returned an empty sweep: {shape} needs at least one member", spec_name)
    bad = [name for name, value in document.items() if not (isinstance(value, dict) and "schema" in value)]
    if bad:
        raise ExpcError([Problem(f"sweep member {name!r} is {_kind(document[name])}, not an experiment "
                                 "(an object with a 'schema' field)", spec_name) for name in bad])
    return sorted(document.items())


def _kind(value) -> str:
    if isinstance(value, dict):
        return "an object without a 'schema' field"
    return {str: "a string", list: "an array", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _refuse_identical_members(manifests: list[Manifest]) -> None:
    seen: dict[str, Manifest] = {}
    for m in manifests:
        if m.digest in seen:
            raise ExpcError(f"sweep members {seen[m.digest].member!r} and {m.member!r} compile to the "
                            f"same manifest ({m.short}): a sweep whose members do not differ is a mistake",
                            m.spec)
        seen[m.digest] = m


def build(specs, tla: dict | None = None, sets=(), project: Project | None = None,
          engine: str = "gojsonnet") -> list[Manifest]:
    """Compile every spec, then write all manifests. Nothing is written unless all compile; the
    problems of every failing spec are reported together."""
    from .write import write

    specs = [Path(s) for s in specs]
    project = project or find_project(specs[0])
    manifests, problems = [], []
    for spec in specs:
        try:
            manifests += compile_spec(spec, project, tla, sets, engine)
        except ExpcError as err:
            problems += err.problems
    if problems:
        raise ExpcError(problems)
    write(manifests, project)
    return manifests
