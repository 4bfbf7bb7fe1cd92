"""The pipeline: spec -> documents -> manifests -> files. Each stage lives in its own module:

    override     (overrides.py)  `--set path=value`, `--sweep path=a,b` -> Jsonnet patches on the result
    evaluate     (evaluate.py)   spec file (+ patches) -> document, hermetic go-jsonnet
    knobs        (knobs.py)      every hidden field a declared knob, of its declared type
    split        (here)          document -> one experiment, or the members of a sweep
    pin          (pin.py)        every file the run reads pinned by sha256 (base model, data)
    validate     (validate.py)   JSON Schema + semantic rules, every problem at once
    canonicalize (canonical.py)  rounded floats -> RFC 8785 bytes -> sha256 digest
    write        (write.py)      manifests/<digest>.json + manifests/index/<spec>.jsonl: staged as
                                 compiled, moved into place once every spec has compiled
"""
from __future__ import annotations

import gc
import os
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
    path: Path | None = None  # manifests/<digest>.json once written (or loaded); None in memory
    name: str | None = None  # the member's name as shown: with a --sweep point, 'lr=1e-3,seed=2'
    search: tuple[str, int] | None = None  # (search name, trial number) when `expc search` proposed it
    rules: list | None = None  # a sweep member's early-stopping rules (stopping.py), once build has read them

    def __post_init__(self):
        self.name = self.name or self.member

    def __getattr__(self, name):
        # Only reached for `data` once a build let it go (write.Staging keeps the manifest's file,
        # not its data, so a big sweep's build holds no member's data): read back from the file.
        locate = self.__dict__.get("_stored")
        if name != "data" or locate is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        from .canonical import load_manifest

        self.data = load_manifest(locate(self.digest))[0]
        return self.data

    @property
    def short(self) -> str:
        return self.digest[:12]

    @property
    def label(self) -> str:
        return f"{self.spec}[{self.name}]" if self.name else self.spec


def compile_spec(spec: Path | str, project: Project | None = None, tla: dict | None = None,
                 sets=(), engine: str = "gojsonnet", sweeps=(), fit_check: bool = True, keep=None) -> list[Manifest]:
    """Compile one spec to its manifests, in memory. Raises ExpcError; writes nothing.

    `sweeps` (`--sweep path=a,b`) makes a grid of every experiment the spec returns. A grid
    member is recorded as its spec member with the grid point's values as `--set`s, so `expc
    check` rebuilds it like any other override; only its name shows the point. `fit_check=False`
    leaves out the memory-fit rule only (`expc plan` shows a run that does not fit rather than
    refusing it); such manifests are never written.

    `keep(manifest, body=None) -> manifest` (build's write.Staging.take) is handed each manifest
    as it compiles (with its file's text, where the compile made it), and what it returns is
    kept: it may write the manifest's file and let its data go, so a big sweep is never held
    whole. Given `keep`, a big sweep is compiled as go-jsonnet evaluates it (_compile_streamed).
    """
    spec = Path(spec)
    project = project or find_project(spec)
    tla, sets = dict(tla or {}), list(sets)
    manifests, failures = _compile(spec, project, tla, sets, engine, sweeps, fit_check=fit_check, keep=keep)
    if failures:
        failures = _blame_arguments(failures, spec, project, tla, sets, engine, sweeps, fit_check)
        members = len(manifests) + len({m for m, _ in failures})
        raise ExpcError(_one_problem_per_cause(failures, project.relative(spec), members))
    _refuse_identical_members(manifests)
    return manifests


def _compile(spec: Path, project: Project, tla: dict, sets: list, engine: str, sweeps,
             explain: bool = True, fit_check: bool = True, keep=None) -> tuple[list[Manifest], list[tuple]]:
    """The stages for one spec: (manifests, [(member, problem)] of the members that failed)."""
    from . import bounds

    overrides = parse_set(sets)
    points = grid(parse_sweep(sweeps)) if sweeps else []
    spec_name = project.relative(spec)
    point_sets = {name: [o.text for o in point] for name, point in points}
    manifests, failures = [], []
    origins: dict = {}  # a shared mistake is explained once, not once per member
    pinned: dict = {}  # each distinct model or data section is pinned once per build
    streams = keep is not None and engine == "gojsonnet" and spec.suffix != ".cue" and bounds.can_stream()
    first = _first_evaluation(spec, project, tla, engine, overrides, points, STREAM_ABOVE if streams else CHUNK_MEMBERS)
    if first.members is not None and streams:
        streamed = _compile_streamed(first.members, spec, project, tla, sets, spec_name, overrides, points,
                                     point_sets, pinned, fit_check, keep)
        if streamed is not None:
            _attach_rules(streamed, first, spec, project, tla)
            return streamed, []
        # A member failed: compiled again below, a chunk at a time, for the messages; none is kept.
        keep = _drop
    for evaluation in _evaluations(first, spec, project, tla, sets, engine, overrides, points):
        _compile_members(evaluation, spec, project, tla, sets, spec_name, points, point_sets, manifests,
                         failures, origins, pinned, explain, fit_check, keep)
    if keep is _drop and not failures:
        raise RuntimeError(f"{spec_name}: a member failed to compile as it streamed, but not when compiled again "
                           "(a bug in streamed compilation)")
    if keep is not None and not failures:
        _attach_rules(manifests, first, spec, project, tla)
    return manifests, failures


def _attach_rules(manifests: list[Manifest], first, spec: Path, project: Project, tla: dict) -> None:
    """A built sweep's early-stopping rules, on each member: a hidden field no member evaluates,
    read (and checked) here, so a bad rule stops the build before anything is moved into place.
    A big sweep's were read with its member names, in the same evaluation."""
    from .stopping import parse_rules, read_rules

    if not any(m.member for m in manifests):
        return
    if first.early_stopping is not None:
        rules = parse_rules(first.early_stopping, project.relative(spec))
    else:
        rules = read_rules(spec, project, tla)
    for m in manifests:
        m.rules = rules


# A sweep of more members than this is compiled as it is evaluated, when the build writes it
# (_compile_streamed): one go-jsonnet run hands over each member as it is made, and this process
# compiles and writes it meanwhile, on the other core.
STREAM_ABOVE = 100

# From this many members the stream's evaluation runs in a fresh interpreter (bounds.Stream), where
# go's collector can be set for it: starting one costs about 0.2 s, and the collector so set saves
# about 0.6 ms a member.
FRESH_STREAM_FROM = 1000

# And from as many, up to TWO_RUNS_UP_TO, the evaluation is split between STREAM_WAYS go-jsonnet
# runs side by side, each making every second member: evaluating a member costs about twice what
# compiling and writing it does, so one run kept the build waiting. But each run holds the sweep
# object whole (about 2 KB a member in go's heap, names and fields not yet evaluated), under its
# half of the shared soft limit (bounds.STREAM_GO_MEMORY_MIB): past a quarter of that half go
# collects all the time, and at 100,000 members two runs were slower than one.
TWO_RUNS_UP_TO = 40_000


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


STREAM_WAYS = 2 if _cores() > 1 else 1

# Else (no build: `expc show`, `check`, `plan`; or an error to report), a sweep of more members
# than this is evaluated a chunk at a time: go-jsonnet holds every member it has evaluated until
# its run ends (about 85 KB each for specs/tiny.jsonnet), so a whole 20,000-member sweep took
# 1.7 GB. Each chunk's run computes every member's name again (the sweep object is built whole),
# so chunks are not smaller than they need to be.
CHUNK_MEMBERS = 5000


def _first_evaluation(spec, project, tla, engine, overrides, points, chunk_above):
    """The spec's evaluation, or, for a sweep of more than `chunk_above` members, just its names."""
    try:
        return evaluate(spec, project, tla, engine, overrides, grid=points, chunk_above=chunk_above)
    except ExpcError as err:
        raise _missing_section_field(err, spec, project) or err from None


def _evaluations(first, spec: Path, project: Project, tla: dict, sets: list, engine: str, overrides, points):
    """The spec's evaluation (checked for knobs), or a big sweep's evaluations a chunk at a time.
    A chunk that fails, or whose knobs are wrong, means the whole spec is evaluated again, so
    that the error is reported exactly as for a small sweep."""
    def whole():
        try:
            evaluation = evaluate(spec, project, tla, engine, overrides, grid=points)
        except ExpcError as err:
            raise _missing_section_field(err, spec, project) or err from None
        _check_knobs(evaluation, spec, project, tla, sets)
        return evaluation

    if first.members is None:
        _check_knobs(first, spec, project, tla, sets)
        yield first
        return
    if len(first.members) <= CHUNK_MEMBERS:
        yield whole()
        return
    from expc.schema import manifest_schema

    sections = set(manifest_schema().get("properties", {}))
    imports: list[str] = []
    for start in range(0, len(first.members), CHUNK_MEMBERS):
        try:
            chunk = evaluate(spec, project, tla, engine, overrides, grid=points,
                             members=first.members[start:start + CHUNK_MEMBERS])
        except ExpcError:
            whole()  # raises the error the chunk hit, located and counted as for the whole sweep
            raise RuntimeError(f"a chunk of {project.relative(spec)} failed to evaluate, the whole spec did not "
                               "(a bug in chunked evaluation)") from None
        if knobs.problems(chunk.knobs, sections, lambda name, member: None):
            whole()  # raises, counting the members of the whole sweep
        imports += [i for i in chunk.imports if i not in imports]
        chunk.imports = imports  # every member lists the imports of the whole sweep
        yield chunk


def _drop(manifest, body=None):
    return None


def _source(member: str | None, sets: list, points, point_sets: dict) -> tuple:
    """A member's (spec member, its --sets, its name as shown): a `--sweep` point is recorded as
    the point's --sets on the spec's member, and shown joined to its name by a comma."""
    if not points:
        return member, list(sets), member
    spec_member, _, point = member.rpartition(GRID_SEPARATOR) if GRID_SEPARATOR in member else (None, "", member)
    return spec_member, list(sets) + point_sets[point], f"{spec_member},{point}" if spec_member else point


def _compile_members(evaluation, spec, project, tla, sets, spec_name, points, point_sets, manifests, failures,
                     origins, pinned, explain, fit_check, keep=None) -> None:
    members = split(evaluation.document, spec_name)
    evaluation.document = None  # each member's document is let go once it is compiled
    for index in range(len(members)):
        (member, document), members[index] = members[index], None
        spec_member, member_sets, member = _source(member, sets, points, point_sets)
        try:
            document = pin(document, project, pinned)
            validate(document, origin=_origin(spec, project, spec_member, tla, member_sets, origins) if explain else None,
                     fit_check=fit_check)
            data = canonical.canonicalize(document)
        except ExpcError as err:
            failures += [(member, p) for p in err.problems]
            continue
        manifest = Manifest(data, canonical.digest(data), spec_name, spec_member, dict(tla),
                            member_sets, evaluation.imports, name=member)
        manifest = keep(manifest) if keep else manifest
        if manifest is not None:
            manifests.append(manifest)


def _compile_streamed(names: list[str], spec, project, tla, sets, spec_name, overrides, points, point_sets,
                      pinned, fit_check, keep) -> list[Manifest] | None:
    """A big sweep compiled member by member as go-jsonnet evaluates it (evaluate.stream_members):
    the build and its evaluation runs work side by side, and no member is held once `keep` has
    it; each distinct top-level field is compiled once (streamed.Fields). Returns the manifests,
    or None if any member fails in any stage (its knobs, pin, validate, canonicalize) or the
    evaluation fails: the caller then compiles the sweep the usual way, which reports every
    problem, located and counted as for any sweep. A bound passed is raised as it is, but for
    the memory bound passed by two runs, which are tried again as one."""
    from . import bounds

    big = len(names) >= FRESH_STREAM_FROM
    ways = STREAM_WAYS if big and len(names) <= TWO_RUNS_UP_TO else 1
    source = (names, spec, project, tla, sets, spec_name, overrides, points, point_sets, pinned, fit_check, keep)
    try:
        return _stream(*source, fresh=big, ways=ways)
    except bounds.MemoryBoundPassed:
        if ways == 1:
            raise
    # each run holds the sweep object whole: one run may fit where two did not (the members kept
    # already are kept again: the same files, observed once)
    return _stream(*source, fresh=big, ways=1)


def _stream(names, spec, project, tla, sets, spec_name, overrides, points, point_sets, pinned, fit_check, keep,
            fresh: bool, ways: int) -> list[Manifest] | None:
    """_compile_streamed's work, the evaluation in `ways` runs."""
    from expc.schema import manifest_schema

    from .evaluate import stream_members
    from .streamed import Fields

    fields = Fields(project, pinned, fit_check)
    manifests: list[Manifest] = []
    members = stream_members(spec, project, tla, overrides, points, fresh=fresh, ways=ways)
    # each run's probes are relative to its own member before
    probes = [knobs.StreamProbe(set(manifest_schema().get("properties", {}))) for _ in range(members.ways)]
    compiled = iter(members)
    collecting = gc.isenabled()
    gc.disable()  # it makes no cycles, and Python's collector would walk every manifest made so far
    try:
        for index, (member, sent, document) in enumerate(compiled):
            if index >= len(names) or member != names[index]:
                raise RuntimeError(f"{spec_name}: the member stream gave {member!r} where {names[index:index + 1]} "
                                   "was expected (a bug in streamed evaluation)")
            made = fields.member(document)
            if made is None or not probes[index % members.ways].clean(member, sent, made.keys):
                return None
            spec_member, member_sets, member = _source(member, sets, points, point_sets)
            manifests.append(keep(Manifest(made.data, made.digest, spec_name, spec_member, dict(tla), member_sets,
                                           [], name=member), made.body))
    finally:
        compiled.close()  # stops the evaluation if a member failed
        if collecting:
            gc.enable()
    if members.imports is None or len(manifests) != len(names):
        return None
    for m in manifests:
        m.imports = members.imports  # the files the whole sweep read, known once it has all come
    return manifests


def _missing_section_field(error: ExpcError, spec: Path, project: Project) -> ExpcError | None:
    """A lib line that reads a field the spec's section lacks (`exp.model.vocab_size` on a model
    without one): the section the spec set is the cause, so the spec's line comes first, with a
    did-you-mean among that section's own fields, and the lib line second. None otherwise.

    The fields are read off the spec's text: asking the evaluation for any field of the
    experiment would run the very assert that failed.
    """
    import re

    from expc.errors import did_you_mean

    from .evaluate import blank_comments
    from .provenance import scan

    problem = error.problems[0] if len(error.problems) == 1 else None
    missing = re.fullmatch(r"Field does not exist: (\w+)", problem.message) if problem else None
    at = re.fullmatch(r"(lib/\S+):(\d+):(\d+)", problem.location or "") if missing else None
    path = project.root / at[1] if at else None
    if not at or not path.is_file():
        return None
    line, col = int(at[2]), int(at[3])
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    chain = re.match(r"[A-Za-z_$][\w$]*(?:\s*\.\s*[A-Za-z_]\w*)*", lines[line - 1][col - 1:]) if line <= len(lines) else None
    steps = re.split(r"\s*\.\s*", chain[0]) if chain else []
    from expc.schema import manifest_schema

    if len(steps) < 3 or steps[-1] != missing[1] or steps[-2] not in manifest_schema().get("properties", {}):
        return None
    section, name = steps[-2], steps[-1]
    text = spec.read_text(encoding="utf-8", errors="replace")
    defined = [d for d in scan(text, project.relative(spec)) if d.path == (section,)]
    where, fields = project.relative(spec), []
    if defined:
        where = defined[-1].where
        fields = re.findall(r"([A-Za-z_]\w*)\s*\+?:", blank_comments(text[defined[-1].start:defined[-1].end]))
    return ExpcError([Problem(f"{section} has no field {name!r}{did_you_mean(name, fields)}, which the lib reads"
                              f"\n  (read at {problem.location})", where)])


def _blame_arguments(failures: list[tuple], spec: Path, project: Project, tla: dict, sets: list, engine: str,
                     sweeps, fit_check: bool = True) -> list[tuple]:
    """A problem that goes away without one `--tla` (the spec's default then) or one `--set` is
    that argument's doing: the argument becomes its origin, ahead of the lib line that carried
    the value (`--tla seq_len=2k` before `lib/models.libsonnet:14`). Compiled again once per
    argument, on this error path only."""
    import dataclasses
    import json

    def named(origin):
        return (origin or "").startswith(("--set", "--tla"))

    suspects = [f for f in failures if not named(f[1].origin)]
    if not suspects or not (tla or sets):
        return failures
    blamed: dict[tuple, str] = {}
    arguments = [(f"--tla {k}={json.dumps(v)}", {n: x for n, x in tla.items() if n != k}, sets) for k, v in tla.items()]
    arguments += [(f"--set {s}", tla, sets[:i] + sets[i + 1:]) for i, s in enumerate(sets)]
    for argument, tla_left, sets_left in arguments:
        try:
            _, remaining = _compile(spec, project, tla_left, sets_left, engine, sweeps, explain=False,
                                    fit_check=fit_check)
        except ExpcError:  # needed (a parameter without a default), or wrong in other ways too
            continue
        left = {(m, p.location) for m, p in remaining}
        for member, problem in suspects:
            if (member, problem.location) not in left:
                blamed.setdefault((member, problem), argument)
    out = []
    for member, problem in failures:
        argument = blamed.get((member, problem))
        if argument:
            through = f", through {problem.origin}" if problem.origin else ""
            problem = dataclasses.replace(problem, origin=argument + through)
        out.append((member, problem))
    return out


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

        if Path(spec).suffix == ".cue":  # provenance reads Jsonnet; CUE's own errors carry positions
            return None
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
          engine: str = "gojsonnet", sweeps=(), observe=None) -> list[Manifest]:
    """Compile every spec, then write all manifests. Nothing is written unless all compile; the
    problems of every failing spec are reported together.

    Each manifest's file is written as it compiles, into a staging folder inside manifests/
    (write.Staging), and its data let go (read back from the file if asked for); once every
    spec has compiled, the files are moved into place and the index updated. `observe(manifest)`
    sees each manifest while its data is still in hand (the sweep preview's estimates)."""
    from .write import Staging

    specs = [Path(s) for s in specs]
    project = project or find_project(specs[0])
    manifests, problems = [], []
    with Staging(project, observe) as staging:
        for spec in specs:
            try:
                # with each sweep member's early-stopping rules (_attach_rules)
                manifests += compile_spec(spec, project, tla, sets, engine, sweeps, keep=staging.take)
            except ExpcError as err:
                problems += err.problems
        if problems:
            raise ExpcError(problems)
        staging.commit(manifests)
    for m in manifests:
        m.path = project.manifests / f"{m.digest}.json"
    return manifests
