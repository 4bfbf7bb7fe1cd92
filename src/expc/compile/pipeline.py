"""The pipeline: spec -> documents -> manifests -> files. Each stage lives in its own module:

    override     (overrides.py)  `--set path=value` -> a Jsonnet patch on the spec's result
    evaluate     (evaluate.py)   spec file (+ patch) -> document, hermetic go-jsonnet
    split        (here)          document -> one experiment, or the members of a sweep
    pin          (pin.py)        every file the run reads pinned by sha256 (base model, data)
    validate     (validate.py)   JSON Schema + semantic rules, every problem at once
    canonicalize (canonical.py)  rounded floats -> RFC 8785 bytes -> sha256 digest
    write        (write.py)      manifests/<digest>.json + manifests/index.json, atomically
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from expc.errors import ExpcError, Problem, members_note
from expc.project import Project, find_project

from . import canonical, knobs
from .evaluate import GRID_SEPARATOR, evaluate
from .overrides import grid, parse_set, parse_sweep
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
    name: str | None = None  # the member's name as shown: with a --sweep point, 'lr=1e-3,seed=2'

    def __post_init__(self):
        self.name = self.name or self.member

    @property
    def short(self) -> str:
        return self.digest[:12]

    @property
    def label(self) -> str:
        return f"{self.spec}[{self.name}]" if self.name else self.spec


def compile_spec(spec: Path | str, project: Project | None = None, tla: dict | None = None,
                 sets=(), engine: str = "gojsonnet", sweeps=()) -> list[Manifest]:
    """Compile one spec to its manifests, in memory. Raises ExpcError; writes nothing.

    `sweeps` (`--sweep path=a,b`) makes a grid of every experiment the spec returns. A grid
    member is recorded as its spec member with the grid point's values as `--set`s, so `expc
    check` rebuilds it like any other override; only its name shows the point.
    """
    spec = Path(spec)
    project = project or find_project(spec)
    overrides = parse_set(sets)
    points = grid(parse_sweep(sweeps)) if sweeps else []
    evaluation = evaluate(spec, project, tla, engine, overrides, grid=points)
    _check_knobs(evaluation, spec, project, tla, sets)
    spec_name = project.relative(spec)
    point_sets = {name: [o.text for o in point] for name, point in points}
    manifests, failures = [], []
    origins: dict = {}  # a shared mistake is explained once, not once per member
    for member, document in split(evaluation.document, spec_name):
        spec_member, member_sets = member, list(sets)
        if points:
            spec_member, _, point = member.rpartition(GRID_SEPARATOR) if GRID_SEPARATOR in member \
                else (None, "", member)
            member_sets += point_sets[point]
            member = f"{spec_member},{point}" if spec_member else point
        try:
            document = pin(document, project)
            validate(document, origin=_origin(spec, project, spec_member, tla, member_sets, origins))
            data = canonical.canonicalize(document)
        except ExpcError as err:
            failures += [(member, p) for p in err.problems]
            continue
        manifests.append(Manifest(data, canonical.digest(data), spec_name, spec_member, dict(tla or {}),
                                  member_sets, evaluation.imports, name=member))
    if failures:
        raise ExpcError(_one_problem_per_cause(failures, spec_name, len(manifests) + len({m for m, _ in failures})))
    _refuse_identical_members(manifests)
    return manifests


def _one_problem_per_cause(failures: list[tuple], spec_name: str, members: int) -> list[Problem]:
    """[(member, problem)] -> problems located in the spec; one that several sweep members share
    is reported once, saying in how many."""
    causes: dict[Problem, list] = {}
    for member, problem in failures:
        causes.setdefault(problem, []).append(member)
    out = []
    for p, struck in causes.items():
        if len(struck) == 1:
            where = f"{spec_name}[{struck[0]}]" if struck[0] else spec_name
            out.append(Problem(p.message, f"{where} {p.location}" if p.location else where, p.origin))
        else:
            out.append(Problem(p.message + members_note(struck, members),
                               f"{spec_name} {p.location}" if p.location else spec_name, p.origin))
    return out


def _check_knobs(evaluation, spec, project, tla, sets) -> None:
    """Every hidden field is a declared knob holding its declared type (knobs.py)."""
    from expc.schema import manifest_schema

    def where(name: str, member: str) -> str | None:
        from .provenance import Source, explain

        try:
            found = explain(Source(spec, project, member or None, dict(tla or {}), list(sets)), (name,))
        except ExpcError:
            return None
        if found.override:
            return f"--set {found.override}"
        return found.set_by[0].where if found.set_by else None

    problems = knobs.problems(evaluation.knobs, set(manifest_schema().get("properties", {})), where)
    if problems:
        raise ExpcError(problems)


def _origin(spec, project, member, tla, sets, cache: dict):
    """Where a faulty value was set, for validate's messages; provenance.py is loaded (and pays
    for its probes) only when there is a problem to explain, once per JSON path and overrides."""
    def origin(location):
        from .provenance import Source, origin_finder

        key = (location, tuple(sets))
        if key not in cache:
            cache[key] = origin_finder(Source(spec, project, member, dict(tla or {}), list(sets)))(location)
        return cache[key]
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
            raise ExpcError(f"sweep members {seen[m.digest].name!r} and {m.name!r} compile to the "
                            f"same manifest ({m.short}): a sweep whose members do not differ is a mistake",
                            m.spec)
        seen[m.digest] = m


def build(specs, tla: dict | None = None, sets=(), project: Project | None = None,
          engine: str = "gojsonnet", sweeps=()) -> list[Manifest]:
    """Compile every spec, then write all manifests. Nothing is written unless all compile; the
    problems of every failing spec are reported together."""
    from .write import write

    specs = [Path(s) for s in specs]
    project = project or find_project(specs[0])
    manifests, problems = [], []
    for spec in specs:
        try:
            manifests += compile_spec(spec, project, tla, sets, engine, sweeps)
        except ExpcError as err:
            problems += err.problems
    if problems:
        raise ExpcError(problems)
    write(manifests, project)
    return manifests
