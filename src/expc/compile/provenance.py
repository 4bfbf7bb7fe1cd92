"""Provenance: a manifest leaf (a JSON path) -> the Jsonnet fields that set it, with file and line.

go-jsonnet gives Python no syntax tree and no record of which field produced a value, so this
module combines two honest sources of evidence:

1. A field scanner (`scan`): a small tokenizer for Jsonnet that finds every object field
   definition in the files the evaluation read (the spec and its imports), with its line, its
   path of enclosing field (or `local`) names, and the source span of its value.
2. Knock-out probes (`_live`): for each definition whose name is the leaf's key, the evaluation
   is repeated with that one value replaced by `error '<marker>'`, asking only for the leaf. If
   the marker comes back, the leaf's value depends on that definition; if not, a later mixin
   overrode it (or it belongs to another object). Jsonnet is lazy, so each probe evaluates just
   what the leaf needs.

The definition whose path best matches the leaf's JSON path is the one that set it; other
definitions the leaf depends on are where its value came from (a knob such as `lr::`); same-named
definitions it does not depend on, with a matching path, are the ones it overrode. Limits
(docs/review.md): a value built by a function from differently named parts (`std.mergePatch`, a
computed field name `[k]: v`) is traced only as far as the field that holds it; an object's
`assert` that reads a same-named field can make that field look like a source.

Provenance is never part of a manifest or its digest.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from expc.errors import ExpcError
from expc.project import Project

_MARKER = "expc-provenance-probe"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Definition:
    """One `name: value` field in a Jsonnet file."""

    file: str  # project-relative
    line: int
    path: tuple[str, ...]  # enclosing field / local names, then the field's own name
    hidden: bool  # `::`
    start: int  # value span in the file's text
    end: int
    method: bool = False  # `name(params):: body`, a function rather than a value

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def describe(self) -> str:
        colon = "::" if self.hidden else ":"
        return f"{self.where} ({'.'.join(self.path)}{colon})"


@dataclass
class Explanation:
    path: tuple  # the leaf's JSON path
    value: object
    override: str | None = None  # the `--set` that set it, if one did
    set_by: list[Definition] = field(default_factory=list)  # best match first
    reads: list[Definition] = field(default_factory=list)  # knobs its value came from
    overridden: list[Definition] = field(default_factory=list)
    pinned: str | None = None  # what `expc build` read to fill it in (the pin stage), if it did
    reads_overrides: list[str] = field(default_factory=list)  # `--set`s its value came from

    def origin(self) -> str | None:
        """One line for an error message: 'lib/a:3 (from specs/b:9), overriding lib/c:12'."""
        if self.override:
            return f"--set {self.override}"
        if self.pinned:
            return f"pinned by expc build from {self.pinned}"
        if not self.set_by:
            return None
        text = self.set_by[0].where
        sources = [f"--set {o}" for o in self.reads_overrides] + [f"{d.name} at {d.where}" for d in self.reads]
        if sources:
            text += " (from " + ", ".join(sources) + ")"
        if self.overridden:
            text += ", overriding " + ", ".join(d.where for d in self.overridden)
        return text

    def to_json(self) -> dict:
        def rows(definitions):
            return [{"file": d.file, "line": d.line, "field": ".".join(d.path)} for d in definitions]

        return {"path": display_path(self.path), "value": self.value, "set": self.override,
                "set_by": rows(self.set_by), "reads": rows(self.reads), "reads_set": self.reads_overrides,
                "overridden": rows(self.overridden), "pinned": self.pinned}

    def render(self) -> str:
        lines = [f"{display_path(self.path)} = {json.dumps(self.value)}"]
        if self.override:
            lines.append(f"  set by --set {self.override}")
        if self.pinned:
            lines.append(f"  pinned by expc build from {self.pinned}")
        for d in self.set_by:
            lines.append(f"  set at {d.describe()}")
        for o in self.reads_overrides:
            lines.append(f"  from --set {o}")
        for d in self.reads:
            lines.append(f"  from {d.describe()}")
        for d in self.overridden:
            lines.append(f"  overriding {d.describe()}")
        if not (self.override or self.set_by or self.pinned):
            lines.append("  origin not found (see docs/review.md, 'Provenance limits')")
        return "\n".join(lines)


# --- JSON paths ----------------------------------------------------------------------------------

def parse_path(text: str) -> tuple:
    """'$.deepspeed.zero_optimization.stage' or 'logging.wandb.tags[0]' -> ('deepspeed', ..., 0)."""
    text = text.strip()
    text = text[1:] if text.startswith("$") else text
    text = text[1:] if text.startswith(".") else text
    steps = []
    pos = 0
    for match in _STEP.finditer(text):
        if match.start() != pos and text[pos:match.start()] != ".":
            raise ExpcError(f"{text!r} is not a JSON path (expected e.g. deepspeed.zero_optimization.stage)")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if not steps or pos != len(text):
        raise ExpcError(f"{text!r} is not a JSON path (expected e.g. deepspeed.zero_optimization.stage)")
    return tuple(steps)


def display_path(path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


# --- explaining ----------------------------------------------------------------------------------

@dataclass
class Source:
    """How to evaluate one manifest: its spec, sweep member, top-level arguments and overrides."""

    spec: Path
    project: Project
    member: str | None = None
    tla: dict = field(default_factory=dict)
    sets: list = field(default_factory=list)


def explain(source: Source, path: tuple) -> Explanation:
    from .evaluate import evaluate

    from .overrides import parse_set

    # An override wins over every Jsonnet field: the last one that reached this leaf or a parent.
    for override in reversed(parse_set(source.sets)):
        if tuple(path[:len(override.path)]) != override.path:
            continue
        if override.op == "delete":
            raise ExpcError(f"{display_path(path)}: deleted by --set {override.text}")
        value = override.value
        for step in path[len(override.path):]:
            try:
                value = value[step]
            except (KeyError, IndexError, TypeError):
                raise ExpcError(f"{display_path(path)}: no such field in --set {override.text}") from None
        return Explanation(tuple(path), value, override=override.text)
    evaluation = evaluate(source.spec, source.project, source.tla, overrides=parse_set(source.sets), check_knobs=False,
                          bounded=False)
    files = [source.project.relative(source.spec), *dict.fromkeys(evaluation.imports)]
    texts = {f: (source.project.root / f).read_text(encoding="utf-8") for f in files}
    definitions = [d for f in files for d in scan(texts[f], f)]
    value = _probe(source, path, texts, None)
    if isinstance(value, ExpcError) and (pinned := _pinned(evaluation.document, source, path)):
        return Explanation(tuple(path), pinned[0], pinned=pinned[1])
    if isinstance(value, ExpcError):
        raise ExpcError(f"{display_path(path)}: no such field in the manifest"
                        + (f" member {source.member!r}" if source.member else ""))

    keys = [step for step in path if isinstance(step, str)]
    leaf_key = keys[-1] if keys else None
    named = [d for d in definitions if d.name == leaf_key]
    live = [d for d in named if _live(source, path, texts, d)]
    explanation = Explanation(tuple(path), value)
    if not live:
        return explanation
    best = max(_suffix_match(d.path, keys) for d in live)
    explanation.set_by = [d for d in live if _suffix_match(d.path, keys) == best]
    reads = [d for d in live if d not in explanation.set_by]
    # Knobs the setter reads by another name (`train_batch_size: exp.global_batch_size`).
    setter = explanation.set_by[0]
    referenced = {m.group(0)[1:] for m in re.finditer(r"\.[A-Za-z_][A-Za-z0-9_]*", texts[setter.file][setter.start:setter.end])}
    for d in definitions:
        if (d.name in referenced and d.name != leaf_key and d not in reads and not d.method
                and not texts[d.file][d.start:d.end].lstrip().startswith("import")
                and _live(source, path, texts, d)):
            reads.append(d)
    explanation.reads = reads
    # The `--set`s the value follows (late-bound, so a derived value reads them like a knob).
    overrides = parse_set(source.sets)
    followed = [o for i, o in enumerate(overrides) if _live_override(source, path, texts, i)]
    explanation.reads_overrides = [o.text for o in followed]
    # The objects that merely hold an overridden leaf (`train:` around `--set train.max_steps`)
    # are read on the way to it: naming them would bury the override.
    containers = {step for o in followed for step in o.path[:-1] if isinstance(step, str)}
    explanation.reads = [d for d in explanation.reads if d.name not in containers]
    live_paths = {d.path for d in live}
    candidates = [d for d in named if d not in live and (_suffix_match(d.path, keys) >= 2 or d.path in live_paths)]
    # Overridden, not merely alike: a same-named field of a preset the spec never picked
    # (warmup_linear_decay's total_num_steps, under warmup_cosine) is left out.
    explanation.overridden = [d for d in candidates if d.path in live_paths
                              or _selected(source, texts, definitions, d)]
    return explanation


def _live_override(source: Source, path, texts: dict, index: int) -> bool:
    result = _probe(source, path, texts, None, knock_out_override=index)
    return isinstance(result, ExpcError) and _MARKER in str(result)


def _selected(source: Source, texts: dict, definitions: list[Definition], d: Definition) -> bool:
    """Whether the lib part that holds `d` (the outermost definition around it, in its file) is
    used by the spec at all: knocked out, the whole document fails."""
    outer = next((o for o in definitions if o.file == d.file and o.path == d.path[:1] and o.start <= d.start <= o.end),
                 None)
    if outer is None or outer is d:
        return True
    result = _probe(source, (), texts, outer)
    return isinstance(result, ExpcError) and _MARKER in str(result)


def _pinned(document, source: Source, path: tuple):
    """(value, what it was read from) of a field the pin stage filled in, else None."""
    from .pin import pin

    if source.member is not None:
        document = document.get(source.member, {})
    try:
        node = pin(document, source.project)
        for step in path:
            node = node[step]
    except (ExpcError, KeyError, IndexError, TypeError):
        return None
    data, model = document.get("data", {}), document.get("model", {})
    head = tuple(path[:2])
    if head == ("data", "sha256"):
        what = "the standard library's files" if data.get("source") == "stdlib" else f"the files of {data.get('path')}"
    elif path[0] == "data" and len(path) == 3 and path[2] == "sha256":
        what = f"the bytes of {data.get(path[1], {}).get('path')}"
    elif head == ("model", "files"):
        what = f"the bytes of {model.get('source')}/{path[2]}" if len(path) > 2 else f"the files of {model.get('source')}"
    elif head == ("model", "config"):
        what = f"{model.get('source')}'s config.json"
    else:
        return None
    return node, what


def origin_finder(source: Source):
    """origin(location) for validate(): '$.model.n_head' -> 'lib/models.libsonnet:12 ...' or None.

    Called only when there are problems, so a successful build pays nothing.
    """
    def origin(location: str | None) -> str | None:
        if not location or not location.startswith("$"):
            return None
        try:
            return explain(source, parse_path(location)).origin()
        except ExpcError:
            return None
    return origin


def _suffix_match(definition_path: tuple, keys: list) -> int:
    count = 0
    for a, b in zip(reversed(definition_path), reversed(keys)):
        if a != b:
            break
        count += 1
    return count


def _live(source: Source, path, texts, definition: Definition) -> bool:
    result = _probe(source, path, texts, definition)
    return isinstance(result, ExpcError) and _MARKER in str(result)


def _probe(source: Source, path, texts: dict, knock_out: Definition | None, knock_out_override: int | None = None):
    """Evaluate only the leaf at `path`, with one definition's value (or one `--set`'s)
    replaced by an error."""
    import _gojsonnet

    overlay = dict(texts)
    if knock_out is not None:
        text = texts[knock_out.file]
        overlay[knock_out.file] = text[:knock_out.start] + f" error '{_MARKER}' " + text[knock_out.end:]
    project, spec = source.project, source.spec.resolve()
    lib = project.lib.resolve()

    def resolve_import(importer_dir: str, rel: str):
        for base in (Path(importer_dir or spec.parent), lib):
            candidate = (base / rel).resolve()
            if candidate.is_file() and (candidate.is_relative_to(lib) or candidate.is_relative_to(spec.parent)):
                name = project.relative(candidate)
                body = overlay.get(name)
                return str(candidate), (body.encode("utf-8") if body is not None else candidate.read_bytes())
        raise RuntimeError(f"import {rel!r}: not found")

    from .evaluate import value_code
    from .overrides import parse_set

    selector = "".join(f"[{json.dumps(step)}]" for step in ((source.member,) if source.member else ()) + tuple(path))
    tla_codes = {name: json.dumps(value) for name, value in source.tla.items()}
    overrides = parse_set(source.sets)
    if knock_out_override is not None:
        import dataclasses

        overrides[knock_out_override] = dataclasses.replace(overrides[knock_out_override], knocked_out=_MARKER)
    snippet = value_code(spec, tla_codes, overrides) + f"value{selector}\n"
    try:
        text = _gojsonnet.evaluate_snippet(str(spec.parent / "<provenance>"), snippet,
                                           import_callback=resolve_import)
    except RuntimeError as err:
        return ExpcError(str(err))
    return json.loads(text)


# --- the field scanner ---------------------------------------------------------------------------

def scan(text: str, file: str) -> list[Definition]:
    """Every object field definition in a Jsonnet file, with the span of its value."""
    return _Scanner(text, file).run()


class _Frame:
    def __init__(self, kind: str, prefix: tuple):
        self.kind = kind  # "object" | "group" (parentheses, brackets, the file's top level)
        self.prefix = prefix
        self.state = "member"  # objects: "member" (a field name may follow) | "value" | "other"
        self.field: tuple | None = None  # (name, line, hidden, value start) while in a value
        self.local_name: str | None = None  # names objects inside a `local x = ...`
        self.pending = 0  # groups: `local`/`assert` awaiting their `;`


class _Scanner:
    def __init__(self, text: str, file: str):
        self.text, self.file = text, file
        self.tokens = list(_tokens(text))
        self.out: list[Definition] = []

    def run(self) -> list[Definition]:
        stack = [_Frame("group", ())]
        i = 0
        tokens = self.tokens
        while i < len(tokens):
            kind, value, start, end = tokens[i]
            frame = stack[-1]
            if frame.kind == "object" and frame.state == "member":
                if value == "}":
                    stack.pop()
                elif value == "local":
                    frame.state = "other"
                    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
                    frame.local_name = nxt[1] if nxt and nxt[0] == "ident" else None
                elif value == "assert":
                    frame.state, frame.local_name = "other", None
                elif kind in ("ident", "string") or value == "[":
                    i = self._field(stack, i)
                    continue
                i += 1
                continue
            if value in ("{", "(", "["):
                stack.append(_Frame("object" if value == "{" else "group", self._inner_prefix(frame)))
            elif value in (")", "]"):
                if len(stack) > 1 and stack[-1].kind == "group":
                    stack.pop()
            elif value == "}":
                if frame.kind == "object":
                    self._close_field(frame, start)
                    stack.pop()
            elif value == "," and frame.kind == "object":
                self._close_field(frame, start)
                frame.state, frame.local_name = "member", None
            elif frame.kind == "group" and len(stack) == 1:  # the file's top level
                if value in ("local", "assert"):
                    if frame.pending == 0 and value == "local":
                        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
                        frame.local_name = nxt[1] if nxt and nxt[0] == "ident" else None
                    frame.pending += 1
                elif value == ";" and frame.pending:
                    frame.pending -= 1
                    if frame.pending == 0:
                        frame.local_name = None
            i += 1
        return self.out

    def _inner_prefix(self, frame: _Frame) -> tuple:
        if frame.kind == "object" and frame.state == "value" and frame.field:
            return (*frame.prefix, frame.field[0])
        if frame.local_name:
            return (*frame.prefix, frame.local_name)
        return frame.prefix

    def _field(self, stack, i: int) -> int:
        """At a member's first token: read `name(params)? +? :{1,3}` and enter its value."""
        tokens, frame = self.tokens, stack[-1]
        kind, value, start, _ = tokens[i]
        line = self.text.count("\n", 0, start) + 1
        if value == "[":  # computed name: skip to the matching bracket
            depth, i = 0, i
            while i < len(tokens):
                depth += {"[": 1, "]": -1}.get(tokens[i][1], 0)
                i += 1
                if depth == 0:
                    break
            name = None
        else:
            name = _string_value(value) if kind == "string" else value
            i += 1
        method = i < len(tokens) and tokens[i][1] == "("
        if method:  # skip its parameters
            depth = 0
            while i < len(tokens):
                depth += {"(": 1, ")": -1}.get(tokens[i][1], 0)
                i += 1
                if depth == 0:
                    break
        if i < len(tokens) and tokens[i][1] == "+":
            i += 1
        if i < len(tokens) and tokens[i][0] == "colon":
            hidden = len(tokens[i][1]) >= 2
            frame.state = "value"
            frame.field = (name, line, hidden, tokens[i][3], method) if name is not None else None
            return i + 1
        frame.state = "other"  # not a field after all (e.g. an object comprehension's head)
        frame.field = None
        return i

    def _close_field(self, frame: _Frame, end: int) -> None:
        if frame.state == "value" and frame.field:
            name, line, hidden, start, method = frame.field
            self.out.append(Definition(self.file, line, (*frame.prefix, name), hidden, start, end, method))
        frame.field = None


def _string_value(token: str) -> str:
    if token.startswith(("'", '"')):
        try:
            return json.loads('"' + token[1:-1].replace('"', '\\"').replace("\\'", "'") + '"') \
                if token[0] == "'" else json.loads(token)
        except ValueError:
            return token[1:-1]
    return token


def _tokens(text: str):
    """(kind, text, start, end) for identifiers, strings, colons and punctuation; comments skipped."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#" or text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif text.startswith("|||", i):
            j = text.find("\n", i)
            k = text.find("|||", n if j < 0 else j)
            end = n if k < 0 else k + 3
            yield "string", text[i:end], i, end
            i = end
        elif c in "'\"" or (c == "@" and i + 1 < n and text[i + 1] in "'\""):
            verbatim = c == "@"
            quote = text[i + 1] if verbatim else c
            j = i + (2 if verbatim else 1)
            while j < n:
                if not verbatim and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == quote:
                    if verbatim and j + 1 < n and text[j + 1] == quote:
                        j += 2
                        continue
                    break
                j += 1
            yield "string", text[i:j + 1], i, j + 1
            i = j + 1
        elif c == ":":
            j = i
            while j < n and text[j] == ":" and j - i < 3:
                j += 1
            yield "colon", text[i:j], i, j
            i = j
        elif c.isalpha() or c == "_":
            m = _IDENT.match(text, i)
            yield "ident", m.group(0), i, m.end()
            i = m.end()
        elif c.isdigit():
            m = re.compile(r"[0-9.eE+-]+").match(text, i)  # a number (signs included loosely)
            yield "number", m.group(0), i, m.end()
            i = m.end()
        else:
            yield "punct", c, i, i + 1
            i += 1
