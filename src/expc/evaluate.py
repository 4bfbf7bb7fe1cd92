"""Stage 1, evaluate: a spec file -> a document (plain JSON data), with go-jsonnet.

Evaluation is hermetic. Imports resolve from the importing file's own folder, then from the
project's `lib/`; anything that lands outside those folders (an absolute path, `..`, a symlink) is
refused. No environment variable reaches the spec: `std.extVar` has nothing, and the only inputs
besides files are declared top-level arguments (`--tla name=value`).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ExpcError, Problem
from .project import Project

# go-jsonnet writes a location as `path:line:col` or `path:line:col-col` or `path:(l:c)-(l:c)`.
_LOCATION = re.compile(r"(?P<file>[^\s:()]+\.(?:jsonnet|libsonnet|json)):\(?(?P<line>\d+):(?P<col>\d+)")


@dataclass
class Evaluation:
    """What a spec evaluated to, and which files it read (for `expc affected`)."""

    document: object
    imports: list[str] = field(default_factory=list)  # project-relative, in first-read order


def parse_tla(items: list[str] | tuple[str, ...]) -> dict[str, object]:
    """`name=value` pairs -> {name: value}; a value that parses as JSON is JSON, else a string."""
    out: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ExpcError(f"--tla {item!r}: expected name=value with a Jsonnet identifier as name")
        if name in out:
            raise ExpcError(f"--tla {name}: given twice")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out


ENGINES = ("gojsonnet", "rjsonnet")


def evaluate(spec: Path, project: Project, tla: dict[str, object] | None = None,
             engine: str = "gojsonnet") -> Evaluation:
    """Evaluate one spec hermetically; raise ExpcError with `file:line:col` on any Jsonnet error.

    `engine="rjsonnet"` (opt-in, the `rjsonnet` package) evaluates big sweeps several times
    faster; tests hold it to the same digests as go-jsonnet, the reference.
    """
    evaluate_file = _engine(engine)

    if not Path(spec).is_file():
        raise ExpcError(f"no such spec: {spec}")
    spec = Path(spec).resolve()
    roots = [spec.parent, project.lib.resolve()]
    imports: list[str] = []
    refusals: list[Problem] = []

    def resolve_import(importer_dir: str, rel: str):
        folder = Path(importer_dir or spec.parent)
        if os.path.isabs(rel):
            raise _refuse(refusals, folder, rel, project, f"import {rel!r}: absolute paths are refused; "
                          "import relative to lib/ or the spec's folder")
        for base in (folder, roots[1]):
            candidate = base / rel
            if candidate.is_file():
                real = candidate.resolve()
                if not any(real.is_relative_to(root) for root in roots):
                    raise _refuse(refusals, folder, rel, project, f"import {rel!r} resolves to "
                                  f"{project.relative(real)}, outside lib/ and the spec's folder")
                if real != spec:  # the --tla probe imports the spec itself
                    imports.append(project.relative(real))
                return str(candidate), real.read_bytes()
        raise _refuse(refusals, folder, rel, project,
                      f"import {rel!r}: not found in the importing file's folder or lib/")

    tla_codes = {k: json.dumps(v) for k, v in (tla or {}).items()}
    try:
        if tla_codes:
            _check_takes_arguments(spec, tla_codes, resolve_import, project)
        text = evaluate_file(str(spec), import_callback=resolve_import, tla_codes=tla_codes, max_trace=20)
    except (RuntimeError, UnicodeDecodeError) as err:
        if refusals:
            raise ExpcError(refusals[:1]) from None
        unknown = re.match(r"RUNTIME ERROR: function has no parameter (\w+)|parameter (\w+) is not defined\s+"
                           r"during TLA call", str(err))
        if unknown:
            raise _unknown_tla(unknown[1] or unknown[2], spec, project) from None
        raise jsonnet_error(str(err), project) from None
    return Evaluation(json.loads(text), imports)


def _engine(name: str):
    """The engine's evaluate_file, taking an import callback that returns bytes."""
    if name == "gojsonnet":
        import _gojsonnet

        return _gojsonnet.evaluate_file
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


def _refuse(refusals: list, folder: Path, rel: str, project: Project, message: str) -> RuntimeError:
    """Record why an import is refused; go-jsonnet only learns that it failed.

    The message does not travel through go-jsonnet because its binding copies a callback's
    message without the terminator (trailing garbage, at times invalid UTF-8). The location is the
    import's own text in the importing folder's files.
    """
    quoted = re.compile(r"import(?:str|bin)?\s*(['\"])" + re.escape(rel) + r"\1")
    location = None
    for path in sorted(folder.glob("*.*sonnet")):
        text = path.read_text(encoding="utf-8", errors="replace")
        match = quoted.search(text)
        if match:
            line = text.count("\n", 0, match.start()) + 1
            col = match.start() - text.rfind("\n", 0, match.start())
            location = f"{project.relative(path)}:{line}:{col}"
            break
    refusals.append(Problem(message, location))
    return RuntimeError("import refused")


def _unknown_tla(name: str, spec: Path, project: Project) -> ExpcError:
    """go-jsonnet names the argument but not the parameters: read them off the spec's text."""
    from .errors import did_you_mean

    header = re.search(r"^\s*function\s*\(([^)]*)\)", _without_comments(spec.read_text()), re.M)
    params = re.findall(r"([A-Za-z_]\w*)\s*(?:=|,|$)", header[1]) if header else []
    known = f"; it takes {', '.join(params)}" if params else ""
    return ExpcError(f"--tla {name}: {project.relative(spec)} has no parameter {name!r}"
                     f"{did_you_mean(name, params)}{known}")


def _without_comments(text: str) -> str:
    return re.sub(r"(//|#)[^\n]*|/\*.*?\*/", "", text, flags=re.S)


def _check_takes_arguments(spec, tla_codes, resolve_import, project):
    """go-jsonnet ignores top-level arguments given to a spec that is not a function: refuse."""
    import _gojsonnet

    probe = f"std.isFunction(import {json.dumps(spec.name)})"
    try:
        is_function = _gojsonnet.evaluate_snippet(str(spec.parent / "<tla-check>"), probe,
                                                  import_callback=resolve_import)
    except RuntimeError as err:
        raise jsonnet_error(str(err), project) from None
    if is_function.strip() != "true":
        names = ", ".join(sorted(tla_codes))
        raise ExpcError(f"--tla {names}: {project.relative(spec)} takes no top-level arguments "
                        "(make it a function: `function(lr=3e-4) ...`)")


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
        return ExpcError(head.strip())
    first = frames[0]
    location = f"{first['file']}:{first['line']}:{first['col']}"
    # A static (parse) error has its location at the start of the first line.
    message = head[first.end():].lstrip(" -0123456789:)(").strip() if head.startswith(first.group(0)) else head
    message = message.strip()
    if message == "Overflow":
        message = "overflow: the result is not a finite number (JSON has no Infinity or NaN)"
    callers = [f for f in frames[1:] if f["file"].startswith("specs" + os.sep) or f["file"].endswith(".jsonnet")]
    if callers and callers[-1]["file"] != first["file"]:
        c = callers[-1]
        message += f"\n  called from {c['file']}:{c['line']}:{c['col']}"
    return ExpcError([Problem(message, location)])
