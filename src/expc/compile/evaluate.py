"""Stage 2, evaluate: a spec file -> a document (plain JSON data), with go-jsonnet (CUE: cue.py).

Evaluation is hermetic. Imports resolve from the importing file's own folder, then from the
project's `lib/`; anything that lands outside those folders (an absolute path, `..`, a symlink) is
refused, and so is a spec that is itself a link out of its project. No environment variable
reaches the spec: `std.extVar` has nothing, and the only inputs besides files are declared
top-level arguments (`--tla name=value`).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from expc.errors import ExpcError, Problem, members_note
from expc.project import Project

from . import knobs
from . import overrides as overrides_
from .overrides import Override, parse_value

# go-jsonnet writes a location as `path:line:col` or `path:line:col-col` or `path:(l:c)-(l:c)`.
_LOCATION = re.compile(r"(?P<file>[^\s:()]+\.(?:jsonnet|libsonnet|json)):\(?(?P<line>\d+):(?P<col>\d+)")


@dataclass
class Evaluation:
    """What a spec evaluated to, and which files it read (for `expc affected`)."""

    document: object
    imports: list[str] = field(default_factory=list)  # project-relative, in first-read order
    knobs: dict = field(default_factory=dict)  # member ("" for one experiment) -> knobs.snippet's info
    # A sweep too big to evaluate at once (more than `chunk_above` members): its member names, in
    # order, and no document; evaluate(members=...) then gives the members a chunk at a time.
    members: list[str] | None = None
    # With `members`: the early-stopping rules beside the sweep, as written, read in the same
    # run (None: not read, stopping.read_rules reads them).
    early_stopping: object = None


def parse_tla(items: list[str] | tuple[str, ...]) -> dict[str, object]:
    """`name=value` pairs -> {name: value}; a value that parses as JSON is JSON, else a string."""
    out: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ExpcError(f"--tla {item!r}: expected name=value with a Jsonnet identifier as name")
        if name in out:
            raise ExpcError(f"--tla {name}: given twice")
        out[name] = parse_value(text, f"--tla {item!r}")
    return out


ENGINES = ("gojsonnet", "rjsonnet")


def evaluate(spec: Path, project: Project, tla: dict[str, object] | None = None,
             engine: str = "gojsonnet", overrides: list[Override] | tuple = (), check_knobs: bool = True,
             grid=(), bounded: bool = True, chunk_above: int | None = None,
             members: list[str] | None = None) -> Evaluation:
    """Evaluate one spec hermetically; raise ExpcError with `file:line:col` on any Jsonnet error.

    `overrides` (`--set`) are applied as a Jsonnet patch on the spec's result (overrides.py), so
    they are late-bound: what the spec computes from an overridden value follows it. `grid`
    (`--sweep`, overrides.grid) makes one member of every experiment per grid point.
    `engine="rjsonnet"` (opt-in, the `rjsonnet` package) evaluates big sweeps several times
    faster; tests hold it to the same digests as go-jsonnet, the reference. `bounded=False` (for
    provenance, re-evaluating a spec that has just evaluated within the bounds) runs here.

    A `.cue` spec is evaluated by CUE instead (cue.py), to the same kind of Evaluation; the
    Jsonnet engine choice does not apply to it, and Node is started only there (in its own
    process, which the Python-side bounds do not watch).

    Big sweeps (go-jsonnet): with `chunk_above`, a sweep of more members than that is not
    evaluated; its member names come back instead (Evaluation.members). `members` (some of those
    names) evaluates just those members and their knobs, in one go-jsonnet run, so a build holds
    one chunk of a big sweep at a time. Any error in a chunk is for the caller to report by
    evaluating the whole spec (the messages are the whole spec's).
    """
    if Path(spec).suffix == ".cue":
        from .cue import evaluate_cue

        if not Path(spec).is_file():
            raise ExpcError(f"no such spec: {spec}")
        # No knob probe: CUE's closed definitions refuse an unknown field themselves.
        return Evaluation(*evaluate_cue(Path(spec), project, tla, list(overrides), list(grid),
                                        separator=GRID_SEPARATOR))
    from . import bounds

    _check_spec_inside(Path(spec))
    if bounded and not bounds.in_child():  # in a child process bounded in memory, time and output (bounds.py)
        return bounds.run(evaluate, spec, project, tla, engine, overrides, check_knobs, grid, False, chunk_above,
                          members, where=project.relative(spec))
    evaluate_file = _engine(engine)
    overrides, grid = list(overrides), list(grid)
    # One override per `--sweep` axis is enough to check its path.
    axis_overrides = list({o.path: o for _, point in grid for o in point}.values())

    if not Path(spec).is_file():
        raise ExpcError(f"no such spec: {spec}")
    spec = Path(spec).resolve()
    resolve_import = Importer(spec, project)
    read, imports, refusals = resolve_import.read, resolve_import.imports, resolve_import.refusals

    tla_codes = {k: json.dumps(v) for k, v in (tla or {}).items()}
    if members is not None:
        return _evaluate_members(spec, tla_codes, overrides, grid, members, resolve_import, imports)
    if chunk_above is not None and engine == "gojsonnet" and check_knobs:
        names, rules = _member_names(spec, tla_codes, overrides, grid, resolve_import)
        if names is not None and len(names) > chunk_above:
            return Evaluation(None, imports, {}, members=names, early_stopping=rules)
        # The full evaluation lists its imports in its own order, and reports its own refusals.
        resolve_import.start_again()
    try:
        if tla_codes:
            _check_takes_arguments(spec, tla_codes, resolve_import, project)
        if overrides or grid:
            _check_override_paths(spec, tla_codes, overrides + axis_overrides, resolve_import)
            text = _snippet(spec, "<--set>", _patched(spec, tla_codes, overrides, grid), resolve_import,
                            max_trace=20)
        else:
            text = evaluate_file(str(spec), import_callback=resolve_import, tla_codes=tla_codes, max_trace=20)
    except (RuntimeError, UnicodeDecodeError) as err:
        # A callback's message can reach the binding as invalid UTF-8; the trace after it is intact.
        trace = err.object.decode("utf-8", "replace") if isinstance(err, UnicodeDecodeError) else str(err)
        if refusals:
            raise ExpcError([_refusal_problem(refusals[0], trace, read, project)]) from None
        unknown = re.match(r"RUNTIME ERROR: function has no parameter (\w+)|parameter (\w+) is not defined\s+"
                           r"during TLA call", trace)
        if unknown:
            raise _unknown_tla(unknown[1] or unknown[2], spec, project) from None
        error = _located(jsonnet_error(trace, project), spec, project)
        error = _failing_members(spec, project, tla_codes, trace, resolve_import, overrides, grid) or error
        raise _blame_arguments(error, spec, project, tla or {}, overrides, resolve_import, grid) from None
    document = json.loads(text)
    knob_info = {}
    if check_knobs:  # one more evaluation, of the hidden fields only
        knob_info = json.loads(_snippet(spec, "<knobs>", knobs.snippet(value_code(spec, tla_codes, overrides, grid)),
                                        resolve_import))
    return Evaluation(document, imports, knob_info)


class Importer:
    """The import callback of one evaluation: a file is read only from lib/ or the spec's folder
    (after links are resolved); every file read is listed, and a refused import is kept so the
    error can be located at the line that asked for it."""

    def __init__(self, spec: Path, project: Project):
        self.spec, self.project = spec, project
        self.roots = [spec.parent, project.lib.resolve()]
        self.imports: list[str] = []
        self.read: list[Path] = [spec]  # every file evaluated so far: one of them holds a refused import
        self.refusals: list[_Refusal] = []
        # go-jsonnet asks again each time an import is evaluated, not once a file: an import in
        # a field's body (the lib's `knobs:: import ...`) is evaluated afresh for every object
        # that field is in, so every member of a sweep asked, and paid the checks and the read.
        self.answers: dict[tuple[str, str], tuple[str, bytes]] = {}

    def start_again(self) -> None:
        """Forget what was read, for another evaluation with this importer."""
        del self.imports[:], self.read[1:], self.refusals[:]
        self.answers.clear()

    def __call__(self, importer_dir: str, rel: str):
        answer = self.answers.get((importer_dir, rel))
        if answer is None:
            answer = self.answers[importer_dir, rel] = self._answer(importer_dir, rel)
        return answer

    def _answer(self, importer_dir: str, rel: str) -> tuple[str, bytes]:
        spec, project, roots, read, imports, refusals = (self.spec, self.project, self.roots, self.read,
                                                          self.imports, self.refusals)
        folder = Path(importer_dir or spec.parent)
        shown = _shown_import(rel)
        if os.path.isabs(rel):
            raise _refuse(refusals, folder, rel, f"import {shown}: absolute paths are refused; "
                          "import relative to lib/ or the spec's folder")
        for base in (folder, roots[1]):
            candidate = base / rel
            try:
                if not candidate.is_file():
                    continue
                real = candidate.resolve()
                inside = any(real.is_relative_to(root) for root in roots)
                content = real.read_bytes() if inside else b""
            except (OSError, ValueError, RuntimeError) as err:  # too long a name, a link loop, no permission
                reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
                raise _refuse(refusals, folder, rel, f"import {shown}: cannot be read ({reason})") from None
            if not inside:
                raise _refuse(refusals, folder, rel, f"import {shown} resolves to "
                              f"{_link_target(candidate, real, project)}, outside lib/ and the spec's folder")
            # Listed once: go-jsonnet asks again from each importing folder (a lib imported by
            # a spec and by another lib). The spec itself (the --tla probe imports it) is not.
            if real not in read:
                read.append(real)
                imports.append(project.relative(real))
            return str(candidate), content
        raise _refuse(refusals, folder, rel, f"import {shown}: not found in the importing file's folder or lib/")


def evaluate_snippet(spec: Path, project: Project, label: str, code: str) -> str:
    """`code` (which imports the spec by its file name) evaluated beside the spec, under the
    spec's own import rules and within the evaluation bounds: for what a build does not
    evaluate, the hidden fields beside a sweep or an experiment (a search's declaration,
    early-stopping rules). A Jsonnet error is an ExpcError located as a build's would be."""
    from . import bounds

    spec = Path(spec).resolve()
    if not bounds.in_child():
        return bounds.run(_evaluate_snippet, spec, project, label, code, where=project.relative(spec))
    return _evaluate_snippet(spec, project, label, code)


def _evaluate_snippet(spec: Path, project: Project, label: str, code: str) -> str:
    _check_spec_inside(spec)
    resolve_import = Importer(spec, project)
    try:
        return _snippet(spec, label, code, resolve_import, max_trace=20)
    except (RuntimeError, UnicodeDecodeError) as err:
        trace = err.object.decode("utf-8", "replace") if isinstance(err, UnicodeDecodeError) else str(err)
        if resolve_import.refusals:
            raise ExpcError([_refusal_problem(resolve_import.refusals[0], trace, resolve_import.read,
                                              project)]) from None
        raise _located(jsonnet_error(trace, project), spec, project) from None


def _check_spec_inside(spec: Path) -> None:
    """A spec under a project's specs/ whose real file lies outside the project (a symbolic
    link) is refused: its real folder would become importable, and the project it is built in
    would be the one around the outside file, not this one."""
    given = Path(os.path.abspath(spec))
    home = next((f for f in given.parents if (f / "lib").is_dir() and (f / "specs").is_dir()), None)
    if home is None or not given.is_file():
        return
    real = given.resolve()
    if not real.is_relative_to(home.resolve()):
        raise ExpcError(f"the spec is a symbolic link to {real}, outside the project; a spec is built from "
                        "inside its project: copy it in (or build it where it lives)", str(given.relative_to(home)))


def _located(error: ExpcError, spec: Path, project: Project) -> ExpcError:
    """An error go-jsonnet gives without a frame (one raised while writing out the result, such
    as a value nested too deep) is the spec's: located at its file."""
    if all(p.location for p in error.problems):
        return error
    where = project.relative(spec)
    return ExpcError([p if p.location else Problem(p.message, where, p.origin) for p in error.problems])


# Jsonnet: the early-stopping rules beside a sweep, as written, given `result` bound to the
# spec's result (stopping.read_rules, and _member_names, which reads them with the names).
RULES_OF_RESULT = "if std.isObject(result) then std.get(result, 'early_stopping', [], true) else []"


def _member_names(spec: Path, tla_codes: dict, overrides, grid, resolve_import) -> tuple[list[str] | None, object]:
    """A sweep's member names (only its field names are computed), or None: not a sweep, or an
    error, which the full evaluation then reports as usual. With them, the early-stopping rules
    beside the sweep, as written (stopping.read_rules' field), or None if reading them failed:
    a second evaluation of the sweep object just for them cost as much as this one."""
    names = "if std.isObject(value) && !std.objectHas(value, 'schema') then std.objectFields(value) else null"
    code = value_code(spec, tla_codes, overrides, grid) + (
        f"local names = {names};\n"
        f"{{ names: names, rules: if names != null then ({RULES_OF_RESULT}) else [] }}")
    try:
        found = json.loads(_snippet(spec, "<sweep-members>", code, resolve_import))
        return found["names"], found["rules"]
    except (RuntimeError, UnicodeDecodeError):
        pass
    resolve_import.start_again()  # the rules failed, or the names: the names alone
    try:
        return json.loads(_snippet(spec, "<sweep-members>", value_code(spec, tla_codes, overrides, grid) + names,
                                   resolve_import)), None
    except (RuntimeError, UnicodeDecodeError):
        return None, None


def _evaluate_members(spec: Path, tla_codes: dict, overrides, grid, members: list[str], resolve_import,
                      imports: list[str]) -> Evaluation:
    """Some members of a sweep and their knobs, from one go-jsonnet run (a member evaluated for
    its document is not evaluated again for its knobs)."""
    chunk = (value_code(spec, tla_codes, overrides, grid)
             + f"local whole = value;\nlocal value = {{ [m]: whole[m] for m in {json.dumps(members)} }};\n")
    try:
        text = _snippet(spec, "<sweep-chunk>", chunk + "{ document: value, knobs: (" + knobs.snippet("") + ") }",
                        resolve_import, max_trace=20)
    except (RuntimeError, UnicodeDecodeError):
        raise ExpcError("a chunk of the sweep failed to evaluate") from None  # the caller reports the real error
    result = json.loads(text)
    return Evaluation(result["document"], imports, result["knobs"])


def stream_members(spec: Path, project: Project, tla: dict | None = None, overrides=(), grid=(),
                   fresh: bool = False, ways: int = 1):
    """Every member of a sweep, as go-jsonnet makes them: yields (name, knob probe, document)
    in the order of the member names (HAND_OVER says what the two are, as bytes), from
    bounded go-jsonnet runs (bounds.Stream) that hand each member over the moment it is
    evaluated and then let it go. `.imports` of the returned stream is the list of files the
    evaluation read, once every member has come, or None when the evaluation stopped on an
    error (the caller evaluates the spec again to report it: the messages are the whole
    spec's). Needs bounds.can_stream(). `fresh`: evaluate in a fresh interpreter, with go's
    collector set for a long stream. `ways`: that many runs side by side, run i making members
    i, i + ways, ...; a member's knob probe is then relative to the one `ways` before it."""
    from . import bounds

    spec = Path(spec).resolve()
    tla_codes = {k: json.dumps(v) for k, v in (tla or {}).items()}
    return _MemberStream(bounds.Stream(_emit_members, spec, project, tla_codes, list(overrides), list(grid),
                                       where=project.relative(spec), fresh=fresh, ways=ways))


class _MemberStream:
    def __init__(self, stream):
        self.stream, self.ways, self.imports = stream, stream.ways, None

    def __iter__(self):
        for record in self.stream:
            name, document, probe = record.split(b"\n")
            yield json.loads(name), probe, document
        self.imports = _imports_in_order(self.stream.results)


def _imports_in_order(results: list) -> list[str] | None:
    """The files the runs of one stream read, in the order one evaluation of the sweep would have
    first read them: every member's document in turn, then every member's knobs.

    Each run gives its files and, for each member it made, how many it had read once the
    member's document was made and once its probe was. The files a document needs are the same
    whichever run makes it, and read in the same order, so those one evaluation first reads for
    member k are those its own run read for it, less those listed for the documents before it;
    the same for the probes after. (Not quite so for a file that a probe is first to read in
    its run and a later member's document reads too: it is listed among the probes' files.)"""
    if any(r is None for r in results):
        return None
    ways, documents, probes = len(results), {}, {}
    made = sum(len(marks) for _, marks in results)
    for k in range(made):
        imports, marks = results[k % ways]
        j = k // ways
        documents.update(dict.fromkeys(imports[marks[j - 1][1] if j else 0:marks[j][0]]))
        probes.update(dict.fromkeys(imports[marks[j][0]:marks[j][1]]))
    for imports, marks in results:  # read after the run's last member, if any
        probes.update(dict.fromkeys(imports[marks[-1][1] if marks else 0:]))
    return list({**documents, **probes})


def _emit_members(spec: Path, project: Project, tla_codes: dict, overrides, grid, emit,
                  part: tuple[int, int] = (0, 1)) -> tuple[list[str], list[tuple[int, int]]] | None:
    """In the bounded child: evaluate the sweep member by member (those of `part`: (i, ways),
    members i, i + ways, ...), emit(name line + JSON) each.

    A member is indexed on `value + {}`, a new object equal to the sweep, so go-jsonnet keeps
    the member's evaluated fields on that object, which is dropped once the member is written
    out; indexed on the sweep itself, every member would stay cached until the run ends
    (about 50 KB each for specs/tiny.jsonnet). The native function's name is drawn afresh each
    run, so a spec cannot call it. Returns the files read and, for each member made, how many
    had been read once its document was made and once it was handed over (its probe made too);
    None if the evaluation failed."""
    import secrets

    resolve_import = Importer(spec, project)
    token = "expc_member_" + secrets.token_hex(16)
    marks: list[tuple[int, int]] = []  # for each member: files read by its document, and by its probe
    read = [0]

    def document_read(length):
        read[0] = len(resolve_import.imports)
        return True

    def hand_over(name, text):
        emit(json.dumps(name).encode("utf-8") + b"\n" + text.encode("utf-8"))
        marks.append((read[0], len(resolve_import.imports)))
        return True

    code = stream_code(value_code(spec, tla_codes, overrides, grid), token, part=part)
    try:
        _snippet(spec, "<sweep-stream>", code, resolve_import, max_trace=20,
                 native_callbacks={token: (("name", "text"), hand_over), token + "_read": (("length",), document_read)})
    except (RuntimeError, UnicodeDecodeError):
        return None
    return resolve_import.imports, marks


# How the stream hands over member `m` of the sweep `value`, given the member before's probe
# (`last`), as one text of three lines: its name (the caller's), its document as minified JSON
# (which holds no newline), then its knob probe (knobs.STREAM_PROBE). Its value is what the next
# member's probe needs, its `last`. The document goes whole: writing it out a top-level field at
# a time in Jsonnet cost the evaluation a sixth more, and the build, which has the time, splits
# it (streamed.Fields). `read` is called between the document and the probe, to note how many
# files the document had read (_imports_in_order): one evaluation of the sweep reads every
# member's document before any knob.
HAND_OVER = ("local e = (value + {})[m], d = std.manifestJsonMinified(e);\n"
             "if !read(std.length(d)) then error 'not noted'\n"
             "else local p = probe(e, last);\n"
             "if emit(m, d + '\\n' + std.manifestJsonMinified(p.sent)) then p.next else error 'not handed over'")


def stream_code(value_code: str, emit_name: str, hand_over: str = HAND_OVER, part: tuple[int, int] = (0, 1)) -> str:
    """The stream's Jsonnet: every member of `value` (of `part`, (i, ways): members i, i + ways,
    ...) handed over in turn to the native function `emit_name` (bench/big_sweeps.py --child
    times it with parts of `hand_over` taken out)."""
    i, ways = part
    names = ("std.objectFields(value)" if ways == 1 else
             f"(local all = std.objectFields(value);\n"
             f" std.makeArray(std.floor((std.length(all) - {i} + {ways - 1}) / {ways}),\n"
             f"               function(j) all[{ways} * j + {i}]))")
    return (value_code + knobs.STREAM_PROBE + f"local emit = std.native({json.dumps(emit_name)});\n"
            + f"local read = std.native({json.dumps(emit_name + '_read')});\n"
            + f"local step(last, m) = {hand_over};\n"
            + f"std.length(std.foldl(step, {names}, {{ declared: null, fields: null }}))\n")


def value_code(spec: Path, tla_codes: dict, overrides: list[Override] = (), grid=()) -> str:
    """Jsonnet that binds `value` to the spec's result: called with its top-level arguments, and
    with the `--set` patch mixed into the experiment (or into every member of a sweep). With a
    `--sweep` grid ([(name, overrides)]), every experiment becomes one member per grid point,
    named `<member>` + GRID_SEPARATOR + `<point>` (just `<point>` for a single experiment)."""
    args = ", ".join(f"{name}={code}" for name, code in sorted(tla_codes.items()))
    code = (f"local spec = import {json.dumps(spec.name)};\n"
            f"local result = if std.isFunction(spec) then spec({args}) else spec;\n")
    if not overrides and not grid:
        return code + "local value = result;\n"
    code += f"local patch = {overrides_.patch(overrides)};\n"
    if not grid:
        return code + ("local value = if !std.isObject(result) then result\n"
                       "  else if std.objectHas(result, 'schema') then result + patch\n"
                       "  else { [m]: result[m] + patch for m in std.objectFields(result) };\n")
    points = ", ".join(f"{json.dumps(name)}: {overrides_.patch(point)}" for name, point in grid)
    sep = json.dumps(GRID_SEPARATOR)
    return code + (f"local points = {{ {points} }};\n"
                   "local value = if !std.isObject(result) then result\n"
                   "  else if std.objectHas(result, 'schema') then\n"
                   "    { [p]: result + patch + points[p] for p in std.objectFields(points) }\n"
                   f"  else {{ [m + {sep} + p]: result[m] + patch + points[p]\n"
                   "         for m in std.objectFields(result) for p in std.objectFields(points) };\n")


# Joins a sweep member's name and a `--sweep` point's inside the evaluation; shown as a comma.
GRID_SEPARATOR = "\u001f"


def _patched(spec: Path, tla_codes: dict, overrides: list[Override], grid=()) -> str:
    return value_code(spec, tla_codes, overrides, grid) + "value\n"


def _snippet(spec: Path, label: str, code: str, resolve_import, **options) -> str:
    """go-jsonnet on a snippet that imports the spec (from the spec's folder, hermetically)."""
    import _gojsonnet

    return _gojsonnet.evaluate_snippet(str(spec.parent / label), code, import_callback=resolve_import, **options)


def _check_override_paths(spec: Path, tla_codes: dict, overrides: list[Override], resolve_import) -> None:
    """Every `--set` path must fit the spec's result (each member of a sweep): one problem per
    distinct mistake, however many members share it."""
    snippet = (value_code(spec, tla_codes) + f"local walk = {overrides_.walk_code(overrides)};\n"
               "if !std.isObject(value) then {}\n"
               "else if std.objectHas(value, 'schema') then { '': walk(value) }\n"
               "else { [m]: walk(value[m]) for m in std.objectFields(value) if std.isObject(value[m]) }\n")
    walks = json.loads(_snippet(spec, "<--set>", snippet, resolve_import))
    problems: dict[Problem, list[str]] = {}
    for member, member_walks in walks.items():
        for problem in overrides_.path_problems(overrides, member_walks):
            problems.setdefault(problem, []).append(member)
    if problems:
        raise ExpcError([Problem(p.message + members_note(members, len(walks)), p.location)
                         for p, members in problems.items()])


def _blame_arguments(error: ExpcError, spec: Path, project: Project, tla: dict, overrides: list[Override],
                     resolve_import, grid=()) -> ExpcError:
    """When the spec evaluates without one `--set` or `--tla` but not with it, that argument is
    the cause: its text is named first, then the lib line the error struck at.

    Evaluated again only on this error path, once per argument; an argument whose removal leaves
    the error (or that is needed, a parameter without a default) is not blamed.
    """
    if not overrides and not tla and not grid:
        return error
    suspects = [(o.where, tla, [x for x in overrides if x is not o]) for o in overrides]
    suspects += [(f"--tla {name}={json.dumps(value)}", {k: v for k, v in tla.items() if k != name}, overrides)
                 for name, value in tla.items()]
    suspects = [(where, tla_left, overrides_left, grid) for where, tla_left, overrides_left in suspects]
    if grid:
        suspects.append(("--sweep " + " --sweep ".join(sorted({o.path_text for _, p in grid for o in p})), tla,
                         overrides, ()))
    for where, tla_left, overrides_left, grid_left in suspects:
        codes = {k: json.dumps(v) for k, v in tla_left.items()}
        try:
            _snippet(spec, "<blame>", _patched(spec, codes, overrides_left, grid_left), resolve_import)
        except RuntimeError:
            continue
        return ExpcError([Problem(p.message + (f"\n  (raised at {p.location})" if p.location else ""),
                                  where, p.origin) for p in error.problems])
    return error


# Past this many failing members a sweep's build stops looking: a shared mistake fails them all.
MEMBER_ERROR_LIMIT = 5


def _failing_members(spec: Path, project: Project, tla_codes: dict, trace: str, resolve_import,
                     overrides: list[Override] = (), grid=()) -> ExpcError | None:
    """For a sweep whose evaluation failed: every failing member's error, under its name.

    go-jsonnet stops at the first error. Its trace names the field being manifested when the
    error struck; the outermost one is the member. Evaluating the sweep again without the
    members found so far finds the next one. None when the spec is not a sweep, or the error
    is not inside one member: the plain error is then the whole story.
    """
    value = value_code(spec, tla_codes, overrides, grid)
    try:
        names = json.loads(_snippet(spec, "<sweep-member>", value + "if std.isObject(value) && "
                                    "!std.objectHas(value, 'schema') then std.objectFields(value) else []",
                                    resolve_import))
    except RuntimeError:
        return None
    failed: list[str] = []
    causes: dict[tuple, list[str]] = {}  # (message, location) -> the members it struck
    while trace is not None and len(failed) < MEMBER_ERROR_LIMIT:
        fields = re.findall(r'^\s*Field "(.*)"\s*$', trace, re.M)
        member = fields[-1] if fields else None
        if member not in names or member in failed:
            if not failed:
                return None
            causes.setdefault((None, None), [])
            break
        failed.append(member)
        for problem in jsonnet_error(trace, project).problems:
            causes.setdefault((problem.message, problem.location), []).append(member)
        rest = f"local failed = std.set({json.dumps(failed)});\n"
        try:
            _snippet(spec, "<sweep-member>", value + rest + "{ [n]: value[n] for n in std.objectFields(value) "
                     "if !std.setMember(n, failed) }", resolve_import)
            trace = None
        except RuntimeError as err:
            trace = str(err)
    spec_name = project.relative(spec)
    problems = []
    for (message, location), members in causes.items():
        if message is None:  # an error outside any one member: the plain one
            problems += jsonnet_error(trace, project).problems
            continue
        shown = [m.replace(GRID_SEPARATOR, ",") for m in members]
        # One problem per cause: a shared mistake in 60 members is one line, not 60.
        where_members = f"{spec_name}[{shown[0]}]" if len(shown) == 1 else spec_name
        note = "" if len(shown) == 1 else members_note(shown, len(names))
        problems.append(Problem(message + note, f"{where_members} {location}" if location else where_members))
    if trace is not None:
        problems.append(Problem(f"stopped after {MEMBER_ERROR_LIMIT} failing sweep members; fix these and "
                                "build again to check the rest", spec_name))
    return ExpcError(problems) if problems else None


def _engine(name: str):
    """The engine's evaluate_file, taking an import callback that returns bytes."""
    if name == "gojsonnet":
        import _gojsonnet

        return _gojsonnet.evaluate_file
    if name == "jsonnet":
        # The C++ binding (the `jsonnet` wheel): not a command-line choice, only a second
        # reference that tests hold to go-jsonnet's digests. Same callback contract (bytes).
        import _jsonnet

        return _jsonnet.evaluate_file
    if name != "rjsonnet":
        raise ExpcError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    try:
        import rjsonnet
    except ImportError:
        raise ExpcError("--engine rjsonnet needs the rjsonnet package (pip install rjsonnet)") from None

    def evaluate_file(path, import_callback, **options):
        def text_callback(folder, rel):  # rjsonnet wants the content as text
            if rel == path:  # rjsonnet loads the spec itself through the callback too
                return path, Path(path).read_text(encoding="utf-8")
            found, content = import_callback(folder, rel)
            return found, content.decode("utf-8")
        return rjsonnet.evaluate_file(path, import_callback=text_callback, **options)
    return evaluate_file


def _shown_import(rel: str) -> str:
    """An import's text for a message: quoted, and cut short when it is absurdly long."""
    return repr(rel if len(rel) <= 120 else rel[:100] + "...")


def _link_target(candidate: Path, real: Path, project: Project) -> str:
    """Where an import that leaves the project leads, as a reader can check it: a symbolic
    link's own target when that already lies outside (`/proc/self/environ`, not the
    `/proc/4242/environ` it resolves to in this process), else the resolved path."""
    if candidate.is_symlink():
        target = Path(os.path.normpath(candidate.parent / os.readlink(candidate)))
        root = project.root.resolve()
        if not target.is_relative_to(root):
            return str(target)
    return project.relative(real)


@dataclass(frozen=True)
class _Refusal:
    message: str
    folder: Path  # the importing file's folder
    rel: str  # the import's text


def _refuse(refusals: list, folder: Path, rel: str, message: str) -> RuntimeError:
    """Record why an import is refused; go-jsonnet only learns that it failed.

    The message does not travel through go-jsonnet because its binding copies a callback's
    message without the terminator (trailing garbage, at times invalid UTF-8).
    """
    refusals.append(_Refusal(message, folder, rel))
    return RuntimeError("import refused")


def _refusal_problem(refusal: _Refusal, trace: str, read: list[Path], project: Project) -> Problem:
    """The refusal, located at the import itself.

    go-jsonnet's trace names the import expression. When it does not (or names something else),
    the location is the import's text, outside comments, in a file of the importing folder that
    this evaluation read: the spec first, then its imports in the order they were read.
    """
    # The binding cuts an import's text at a NUL: what follows it up to the quote is matched too.
    quoted = re.compile(r"import(?:str|bin)?\s*(['\"])" + re.escape(refusal.rel) + r"(?:\\u0000[^'\"\n]*)?\1")
    frame = _LOCATION.search(trace)
    if frame:
        path = Path(frame["file"])
        path = path if path.is_absolute() else project.root / path
        if path.is_file() and path.parent.resolve() == refusal.folder.resolve():
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            line, col = int(frame["line"]), int(frame["col"])
            if line <= len(lines) and quoted.match(lines[line - 1], col - 1):
                return Problem(refusal.message, f"{project.relative(path)}:{line}:{col}")
    for path in read:
        if path.parent != refusal.folder.resolve():
            continue
        text = blank_comments(path.read_text(encoding="utf-8", errors="replace"))
        match = quoted.search(text)
        if match:
            line = text.count("\n", 0, match.start()) + 1
            col = match.start() - text.rfind("\n", 0, match.start())
            return Problem(refusal.message, f"{project.relative(path)}:{line}:{col}")
    return Problem(refusal.message)


# Strings are matched so that `//` inside one does not start a comment.
_COMMENT_OR_STRING = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"|//[^\n]*|#[^\n]*|/\*.*?\*/", re.S)


def blank_comments(text: str) -> str:
    """`text` with every comment replaced by spaces (newlines kept): positions stay the same."""
    def blank(match):
        token = match[0]
        return token if token[0] in "'\"" else re.sub(r"[^\n]", " ", token)
    return _COMMENT_OR_STRING.sub(blank, text)


def _unknown_tla(name: str, spec: Path, project: Project) -> ExpcError:
    """go-jsonnet names the argument but not the parameters: read them off the spec's text."""
    from expc.errors import did_you_mean

    header = re.search(r"^\s*function\s*\(([^)]*)\)", blank_comments(spec.read_text()), re.M)
    params = re.findall(r"([A-Za-z_]\w*)\s*(?:=|,|$)", header[1]) if header else []
    known = f"; it takes {', '.join(params)}" if params else ""
    return ExpcError(f"--tla {name}: {project.relative(spec)} has no parameter {name!r}"
                     f"{did_you_mean(name, params)}{known}")


def _check_takes_arguments(spec, tla_codes, resolve_import, project):
    """go-jsonnet ignores top-level arguments given to a spec that is not a function: refuse."""
    probe = f"std.isFunction(import {json.dumps(spec.name)})"
    # Its errors (a refused import, a syntax error) are the spec's: evaluate() reports them.
    is_function = _snippet(spec, "<tla-check>", probe, resolve_import)
    if is_function.strip() != "true":
        names = ", ".join(sorted(tla_codes))
        raise ExpcError(f"--tla {names}: {project.relative(spec)} takes no top-level arguments "
                        "(make it a function: `function(lr=3e-4) ...`)")


_STACK_HINT = ("max stack frames exceeded: go-jsonnet allows 500 nested calls; this is an endless (or very "
               "deep) recursion, an import cycle, or a value nested that deep")


def jsonnet_error(text: str, project: Project) -> ExpcError:
    """A go-jsonnet error message -> ExpcError located at the innermost frame.

    The innermost frame is where the error was raised (often a lib `assert`); when that is not in
    a spec, the outermost spec frame is added as "called from", so both lines are shown.
    """
    root = str(project.root) + os.sep
    text = text.replace(root, "")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    head = lines[0] if lines else text
    head = re.sub(r"^(RUNTIME|STATIC) ERROR: ", "", head)
    head = head.replace("importer error: ", "")
    frames = [m for ln in lines for m in [_LOCATION.search(ln)] if m]
    if not frames:
        return ExpcError(_STACK_HINT if head.strip() == "max stack frames exceeded." else head.strip())
    first = frames[0]
    location = f"{first['file']}:{first['line']}:{first['col']}"
    # A static (parse) error has its location at the start of the first line (after "RUNTIME
    # ERROR: " when the file was parsed for an import).
    at_start = _LOCATION.match(head)
    message = (head[at_start.end():].lstrip(" -0123456789:)(") if at_start else head).strip()
    if message == "Overflow":
        message = "overflow: the result is not a finite number (JSON has no Infinity or NaN)"
    if message == "max stack frames exceeded.":
        message = _STACK_HINT
    if message == "Unexpected type null, expected function" and "std.native" in _text_at(first, project, whole=True):
        message += ("; std.native gives null here: expc registers no native functions, so a spec reads nothing "
                    "but its files")
    if message.startswith("Undefined external variable: "):
        message += ("; expc passes no external variables (nothing from the environment reaches a spec): declare "
                    "a top-level argument, `function(name=default)`, and give it with --tla name=value")
    missing = re.fullmatch(r"Field does not exist: (\S+)", message)
    if missing:
        end = re.match(r"-(\d+)", first.string[first.end():])  # a one-line range: the whole `a.b.name`
        message += _missing_field_hint(missing[1], first["file"], int(first["line"]), int(first["col"]),
                                       int(end[1]) if end else None, project)
    callers = [f for f in frames[1:] if f["file"].startswith("specs" + os.sep) or f["file"].endswith(".jsonnet")]
    if callers and callers[-1]["file"] != first["file"]:
        c = callers[-1]
        message += f"\n  called from {c['file']}:{c['line']}:{c['col']}"
    return ExpcError([Problem(message, location)])


def _text_at(frame, project: Project, whole: bool = False) -> str:
    """The source text from a frame's line and column to the end of that line, or (`whole`) the
    frame's whole file without comments; "" if unreadable."""
    path = Path(frame["file"]) if Path(frame["file"]).is_absolute() else project.root / frame["file"]
    try:
        text = blank_comments(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return ""
    if whole:
        return text
    lines, line = text.splitlines(), int(frame["line"])
    return lines[line - 1][int(frame["col"]) - 1:] if 0 < line <= len(lines) else ""


def _missing_field_hint(name: str, file: str, line: int, col: int, end: int | None, project: Project) -> str:
    """A did-you-mean for `Field does not exist: NAME`, which go-jsonnet gives without one.

    When the indexed expression is a lib table (`expc.hardware.h100_x4`, `models.gpt_dbug` after
    `local models = import 'models.libsonnet'`), the names come from that table and are listed;
    otherwise the closest name in any lib table is offered (an experiment knob, a preset...).
    """
    tables = _lib_fields(project)
    if not tables:
        return ""
    table = None
    path = Path(file) if Path(file).is_absolute() else project.root / file
    if end is not None and path.is_file():
        text = blank_comments(path.read_text(encoding="utf-8", errors="replace"))
        lines = text.splitlines()
        if line <= len(lines):
            indexed = re.fullmatch(r"(.+?)\s*(?:\.\s*[A-Za-z_]\w*|\[.*\])", lines[line - 1][col - 1:end - 1].strip())
            table = _table_named_by(indexed[1], text, tables) if indexed else None
    if table:
        close = _closest(name, tables[table])
        hint = " (did you mean " + " or ".join(f'"{c}"' for c in close) + "?)" if close else ""
        return f"{hint}; expc.{table} has {', '.join(tables[table])}"
    # Not a table: the object's own names are not known here, and a name from elsewhere would
    # mislead (evaluate() names a section's fields when the object is one).
    return ""


def _closest(name: str, choices) -> list[str]:
    """The closest choices (difflib's ratio, 0.6 at least): the best and any that tie with it."""
    import difflib

    ratio = {c: difflib.SequenceMatcher(None, name, c).ratio() for c in choices}
    best = max(ratio.values(), default=0)
    return [c for c in sorted(ratio) if ratio[c] >= 0.6 and ratio[c] == best]


def _table_named_by(expr: str, text: str, tables: dict, depth: int = 0) -> str | None:
    """The lib table an expression in `text` names, when that can be read off the text: a table's
    name, "" for expc.libsonnet itself (whose fields are the tables), None when it is not a table."""
    expr = expr.strip()
    if depth > 4:
        return None
    imported = re.fullmatch(r"\(?\s*import\s*(['\"])(\w+)\.libsonnet\1\s*\)?", expr)
    if imported:
        return "" if imported[2] == "expc" else imported[2] if imported[2] in tables else None
    member = re.fullmatch(r"(.+?)\s*\.\s*([A-Za-z_]\w*)", expr)
    if member:
        return member[2] if member[2] in tables and _table_named_by(member[1], text, tables, depth + 1) == "" else None
    if re.fullmatch(r"[A-Za-z_]\w*", expr):  # a local: follow its binding
        bound = re.search(r"(?:\blocal\s+|,\s*)" + expr + r"\s*=\s*([^;,]+)[;,]", text)
        return _table_named_by(bound[1], text, tables, depth + 1) if bound else None
    return None


def _lib_fields(project: Project) -> dict[str, list[str]]:
    """{table: its field names, hidden ones included} for each object of lib/expc.libsonnet."""
    import _gojsonnet

    snippet = ("local e = import 'expc.libsonnet';\n"
               "{ [k]: std.objectFieldsAll(e[k]) for k in std.objectFieldsAll(e) if std.isObject(e[k]) }")
    try:
        return json.loads(_gojsonnet.evaluate_snippet(str(project.lib / "<fields>"), snippet,
                                                      jpathdir=[str(project.lib)]))
    except (RuntimeError, UnicodeDecodeError):
        return {}
