"""Stage 1, override: `--set path=value` (and `--sweep`) as a Jsonnet patch on the spec's result.

An override is late-bound: `--set train.max_steps=1000` is evaluated as
`spec + { train+: { max_steps: 1000 } }`, before the result is turned into JSON, so everything the
spec or the lib computes from `train.max_steps` (the schedule's length, the warmup) follows it,
exactly as if the spec had said it. A path reaches hidden knobs too (`--set lr=1e-3`); `:` keeps
the visibility the field had. For a sweep the patch is applied to every member.

The forms (Hydra's, so habits carry over):

    --set path=value     the path must exist, hidden or not (a typo gets a did-you-mean)
    --set +path=value    adds a key that does not exist yet; refused if it does
    --set ++path=value   sets it whether or not it exists
    --set '~path'        deletes it from the manifest (it is hidden; what reads it still can)

A path is dotted keys with optional list indexes (`model.n_layer`, `logging.wandb.tags[0]`). The
value is JSON when it parses as JSON, else a string; YAML-style `[a, b]` and `{k: v}`, which are
not JSON, are refused with their JSON spelling.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from expc.errors import ExpcError, Problem, did_you_mean

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Override:
    text: str  # as the user wrote it, for messages and the index
    op: str  # "set" (must exist), "add" (must not), "force" (either), "delete"
    path: tuple
    value: object = None
    flag: str = "--set"  # or "--sweep": what the user typed, for messages
    typed: str | None = None  # a --sweep axis as typed ('lr=1e-4,3e-4'); `text` is one point of it
    knocked_out: str | None = None  # provenance: the value replaced by `error <this>`, to see who reads it

    @property
    def where(self) -> str:
        return f"{self.flag} {self.typed or self.text}"

    @property
    def path_text(self) -> str:
        return show_path(self.path)


# A string given to a whole section names a preset of the lib table beside it: `--set
# model=gpt_350m`, `--sweep hardware=cpu_laptop,h100_80gb_x8`. A preset that is a function
# (`data.synthetic`) is called with its defaults.
PRESET_TABLES = {"model": "models", "hardware": "hardware", "adapter": "adapters", "data": "data"}


def parse_set(items) -> list[Override]:
    """`path=value` strings (with Hydra's `+`, `++` and `~` prefixes) -> Overrides, in order."""
    return [_parse_one(item) for item in items]


def _parse_one(item: str) -> Override:
    example = "expected path=value, e.g. model.n_layer=12 (or '~path' to delete)"
    if item.startswith("~"):
        path, sep, _ = item[1:].partition("=")
        parts = _parse_path(path)
        if not parts:
            raise ExpcError(f"--set {item!r}: {example}")
        if sep:
            raise ExpcError(f"--set {item!r}: a delete takes no value; write --set '~{path}'")
        return Override(item, "delete", parts)
    op, body = ("force", item[2:]) if item.startswith("++") else ("add", item[1:]) if item.startswith("+") \
        else ("set", item)
    path, sep, text = body.partition("=")
    parts = _parse_path(path) if sep else None
    if not parts:
        raise ExpcError(f"--set {item!r}: {example}")
    return Override(item, op, parts, parse_value(text, f"--set {item!r}"))


def parse_value(text: str, what: str):
    """A command-line value: JSON when it parses as JSON, else the string itself.

    JSON has no NaN or Infinity, and a number too big for a double (1e400) would silently become
    one: both are refused here, naming `what` (e.g. "--set 'model.dropout=1e400'"). A bracketed
    value that is not JSON (YAML's `[a, b]`, `{k: v}`) is refused with its JSON spelling rather
    than kept as a string that merely looks like a list.
    """
    def refuse_constant(token):
        raise ExpcError(f"{what}: {token} is not a finite number")

    def finite_float(token):
        value = float(token)
        if not math.isfinite(value):
            raise ExpcError(f"{what}: {token} is too large for a 64-bit float (at most about 1.8e308)")
        return value

    try:
        value = json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
    except RecursionError:
        raise ExpcError(f"{what}: the value nests too deep to read") from None
    except ValueError:
        if text.strip()[:1] in ("[", "{"):
            raise ExpcError(f"{what}: the value is not JSON; write it as JSON, e.g. {_as_json(text)} "
                            "(quote it for the shell)") from None
        value = text
    if not _is_unicode(value):
        raise ExpcError(f"{what}: the value holds a lone surrogate (such as \\ud800), which is not text")
    return value


def _is_unicode(value) -> bool:
    """No lone surrogate anywhere (JSON's `"\\ud800"` parses to one; UTF-8 cannot hold it)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _as_json(text: str) -> str:
    """YAML-flow `[a, 1]` / `{k: v}` -> `["a", 1]` / `{"k": "v"}`: bare words quoted."""
    def quote(match):
        word = match[0]
        try:
            json.loads(word)
            return word
        except ValueError:
            return json.dumps(word)
    return re.sub(r"[^\s\[\]{},:\"']+", quote, text.strip())


def _parse_path(path: str) -> tuple | None:
    parts, pos = [], 0
    for match in _STEP.finditer(path):
        if match.start() != pos and path[pos:match.start()] != ".":
            return None
        parts.append(match[1] if match[1] is not None else int(match[2]))
        pos = match.end()
    return tuple(parts) if pos == len(path) and parts and isinstance(parts[0], str) else None


def parse_sweep(items) -> list[tuple[str, list[tuple[str, Override]]]]:
    """`--sweep path=a,b,c` (or `path=range(start,stop[,step])`) -> [(axis, [(label, Override)])].

    Axes are combined as a grid (Hydra's multirun), in the order of their names, like the lib's
    `sweep.grid`; a label is the value as written. Commas inside brackets or quotes do not split.
    """
    axes = {}
    for item in items:
        path, sep, text = item.partition("=")
        parts = _parse_path(path) if sep else None
        if not parts or not text:
            raise ExpcError(f"--sweep {item!r}: expected path=value,value,..., e.g. lr=1e-4,3e-4 "
                            "or train.max_steps=range(100,400,100)")
        if path in axes:
            raise ExpcError(f"--sweep {path}: given twice; put every value in one --sweep {path}=a,b")
        labels = _range_labels(text, item) if text.startswith("range(") else _split_values(text)
        if len(set(labels)) != len(labels):
            raise ExpcError(f"--sweep {item!r}: a value is given twice")
        axes[path] = [(label, Override(f"{path}={label}", "set", parts, parse_value(label, f"--sweep {item!r}"),
                                       flag="--sweep", typed=item)) for label in labels]
    return sorted(axes.items())


# Members a `--sweep` grid may make: as many as one range may hold. Two such ranges made ten
# billion combinations, and listing them took the machine's memory (found by tests/test_fuzz.py).
MAX_GRID = 100_000


def grid(axes) -> list[tuple[str, list[Override]]]:
    """Every combination of the axes: [(member name 'lr=1e-4,model=gpt_124m', its overrides)]."""
    size = math.prod(len(points) for _, points in axes)
    if size > MAX_GRID:
        sizes = " x ".join(f"{len(points):,} {axis}" for axis, points in axes)
        raise ExpcError(f"--sweep: the grid has {size:,} members ({sizes}); at most {MAX_GRID:,} are allowed")
    combos = [("", [])]
    for axis, points in axes:
        combos = [(f"{name},{axis}={label}".lstrip(","), [*overrides, override])
                  for name, overrides in combos for label, override in points]
    return combos


def _split_values(text: str) -> list[str]:
    values, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote and text[i - 1] != "\\" else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def _range_labels(text: str, item: str) -> list[str]:
    """Hydra's range(start, stop[, step]): stop excluded; whole numbers stay whole."""
    match = re.fullmatch(r"range\(([^,()]+),([^,()]+)(?:,([^,()]+))?\)", text.replace(" ", ""))
    try:
        start, stop, step = (float(match[1]), float(match[2]), float(match[3] or 1)) if match else (0, 0, 0)
    except ValueError:
        match = None
    if match and not all(math.isfinite(x) for x in (start, stop, step)):  # 1e400 reads as infinity, nan as nan
        match = None
    if not match or step == 0:
        raise ExpcError(f"--sweep {item!r}: expected range(start, stop) or range(start, stop, step), "
                        "with numbers and a step that is not 0")
    steps = (stop - start) / step  # finite numbers, yet 1e80 / 1e-230 is infinity
    count = max(0, math.ceil(steps - 1e-9)) if math.isfinite(steps) else math.inf
    if count == 0 or count > 100000:
        shown = "more than 100000" if count > 100000 else count
        raise ExpcError(f"--sweep {item!r}: the range has {shown} values (1 to 100000 are allowed)")
    whole = all(x == int(x) for x in (start, step))
    values = [start + i * step for i in range(count)]
    return [str(int(v)) if whole else repr(round(v, 12)) for v in values]


def show_path(parts) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


# --- the patch -----------------------------------------------------------------------------------

def patch(overrides: list[Override]) -> str:
    """Jsonnet code of one mixin object that applies every override in order."""
    return " + ".join(_mixin(o.path, o) for o in overrides) or "{}"


def _value(override: Override) -> str:
    if override.knocked_out:
        return f"error {json.dumps(override.knocked_out)}"
    table = PRESET_TABLES.get(override.path[0]) if len(override.path) == 1 else None
    if table and isinstance(override.value, str):
        kind = json.dumps(f"{override.path[0]} preset")
        pick = (f"(import 'names.libsonnet').pick((import 'expc.libsonnet').{table}, {kind}, "
                f"{json.dumps(override.value)})")
        return f"(local preset = {pick}; if std.isFunction(preset) then preset() else preset)"
    return json.dumps(override.value)


def _mixin(parts: tuple, override: Override, depth: int = 0) -> str:
    key, rest = json.dumps(parts[0]), parts[1:]
    if not rest:
        if override.op == "delete":  # hidden, so not in the manifest; what reads it still may
            return f"{{ {key}:: super[{key}] }}"
        return f"{{ {key}: {_value(override)} }}"
    if isinstance(rest[0], str):
        return f"{{ {key}+: {_mixin(rest, override, depth)} }}"
    return f"{{ {key}: {_list_edit(f'super[{key}]', rest, override, depth)} }}"


def _list_edit(expr: str, parts: tuple, override: Override, depth: int) -> str:
    """`expr` (a list) with element parts[0] replaced (or, for a delete, dropped)."""
    index, rest, x, i = parts[0], parts[1:], f"x{depth}", f"i{depth}"
    if not rest and override.op == "delete":
        return f"[{expr}[{i}] for {i} in std.range(0, std.length({expr}) - 1) if {i} != {index}]"
    if not rest:
        new = _value(override)
    elif isinstance(rest[0], str):
        new = f"{x} + {_mixin(rest, override, depth + 1)}"
    else:
        new = _list_edit(x, rest, override, depth + 1)
    return f"std.mapWithIndex(function({i}, {x}) if {i} == {index} then {new} else {x}, {expr})"


# --- checking the paths against the spec's result ------------------------------------------------

def walk_code(overrides: list[Override]) -> str:
    """Jsonnet code of a function(experiment) -> one entry per override: null when its path fits,
    else what is wrong (the step, and the names or length found there)."""
    steps = json.dumps([list(o.path) for o in overrides])
    return f"""function(e)
  local walk(v, steps, i) =
    if i == std.length(steps) then {{ found: true, hidden: false }}
    else
      local s = steps[i];
      if std.isString(s) then
        if !std.isObject(v) then {{ at: i, type: std.type(v) }}
        else if std.objectHasAll(v, s) then
          if i == std.length(steps) - 1 then {{ found: true, hidden: !std.objectHas(v, s) }}
          else walk(v[s], steps, i + 1)
        else if i == std.length(steps) - 1 then {{ found: false, fields: std.objectFieldsAll(v) }}
        else {{ at: i, fields: std.objectFieldsAll(v) }}
      else if !std.isArray(v) then {{ at: i, type: std.type(v) }}
      else if s >= std.length(v) then {{ at: i, length: std.length(v) }}
      else if i == std.length(steps) - 1 then {{ found: true, hidden: false }}
      else walk(v[s], steps, i + 1);
  [walk(e, steps, 0) for steps in {steps}]"""


def path_problems(overrides: list[Override], walks: list[dict]) -> list[Problem]:
    """Problems of one experiment's walks (walk_code's result), one per faulty override."""
    problems = []
    for override, walk in zip(overrides, walks):
        message = _path_problem(override, walk)
        if message:
            problems.append(Problem(message, override.where))
    return problems


def _path_problem(override: Override, walk: dict) -> str | None:
    parts = override.path
    if "at" in walk:
        at = walk["at"]
        walked, step = parts[:at], parts[at]
        if "type" in walk:
            want = "a list" if isinstance(step, int) else "an object"
            return f"{show_path(walked)} is {_TYPES.get(walk['type'], walk['type'])}, not {want}"
        if "length" in walk:
            return f"index {step} is past the end of {show_path(walked)} (length {walk['length']})"
        return f"no {show_path(parts[:at + 1])} in the experiment{did_you_mean(step, walk['fields'])}"
    found = walk["found"]
    name = show_path(parts)
    if override.op == "set" and not found:
        from .validate import MISPLACED_KEYS

        misplaced = MISPLACED_KEYS.get(parts[-1]) if parts[0] == "model" else None
        if misplaced:
            return f"no {name} in the experiment: {misplaced}"
        hint = did_you_mean(parts[-1], walk["fields"])
        return (f"no {name} in the experiment{hint}; to add a new key write --set +{override.text}"
                if not hint else f"no {name} in the experiment{hint}")
    if override.op == "add" and found:
        return f"{name} already exists; drop the '+' to change it (or write ++ to set it either way)"
    if override.op == "delete" and not found:
        return f"no {name} in the experiment to delete{did_you_mean(parts[-1], walk.get('fields', []))}"
    if override.op == "delete" and walk.get("hidden"):
        return f"{name} is a knob (a hidden field), never in the manifest: set it instead of deleting it"
    return None


_TYPES = {"number": "a number", "string": "a string", "boolean": "a boolean", "null": "null",
          "array": "a list", "object": "an object", "function": "a function"}
