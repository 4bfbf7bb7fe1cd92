"""A search declared in a spec (`expc.search.declare`, lib/search.libsonnet): its space over the
spec's top-level arguments, the metric and its direction, the trial budget, the seed and early
stopping rules, read and checked here; `expc search` (launch/search.py) runs it.

The declaration is a hidden field of the experiment, `search`, so it is in no manifest: a trial
is the spec called with the proposed arguments, the same digest whichever search proposed it.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from expc.errors import ExpcError, did_you_mean
from expc.project import Project

from .stopping import METRICS, parse_rules

DIRECTIONS = ("minimize", "maximize")
DISTRIBUTIONS = ("expc.search.uniform(low, high), log_uniform(low, high), int(low, high, log=false, step=1) "
                 "or choice([values])")


@dataclass(frozen=True)
class Dimension:
    """One top-level argument's range: kind uniform, log_uniform, int or choice."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int = 1
    values: tuple = ()

    def optuna(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.values))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=self.step)
        return FloatDistribution(self.low, self.high, log=self.kind == "log_uniform")

    def tidy(self, value):
        """A proposed value as the trial's argument: reals to 3 significant digits (as
        sweep.random writes them; the name then says exactly what the manifest holds), kept
        inside the bounds."""
        if self.kind in ("uniform", "log_uniform"):
            return min(max(float(f"{value:.3g}"), self.low), self.high)
        return value


@dataclass(frozen=True)
class Declaration:
    spec: str  # project-relative
    name: str
    space: tuple[Dimension, ...]
    metric: str
    direction: str
    trials: int
    seed: int
    startup_trials: int = 10
    rules: list = field(default_factory=list)

    def distributions(self) -> dict:
        return {d.name: d.optuna() for d in self.space}

    def member_name(self, number: int, tla: dict) -> str:
        """Trial `number`'s name, as the executor's table, W&B and `expc report` show it:
        `trial=3,lora_rank=8,lr=0.00312` (the axes read back by expc.axes)."""
        return ",".join([f"trial={number}"] + [f"{d.name}={label(tla.get(d.name))}" for d in self.space])


def label(value) -> str:
    """A trial's value as its name shows it: 3e-4 -> '3e-4', 8 -> '8', 'cpu' -> 'cpu'."""
    if isinstance(value, float):
        text = f"{value:g}"
        mantissa, e, exponent = text.partition("e")
        return mantissa + (f"e{int(exponent)}" if e else "")
    return json.dumps(value) if not isinstance(value, str) else value


def recorded_trials(declaration: Declaration, project: Project) -> dict[int, tuple[str, dict]]:
    """The search's trials as the index records them: trial number -> (digest, top-level arguments)."""
    from .write import index_path, read_index

    found: dict[int, tuple[str, dict]] = {}
    for digest, entry in read_index(project, spec=declaration.spec)["manifests"].items():
        for source in entry["sources"]:
            if source["spec"] != declaration.spec:
                continue
            for number in source.get("search", {}).get(declaration.name, []):
                if number in found and found[number][0] != digest:
                    raise ExpcError(f"trial {number} of search {declaration.name} is recorded for two manifests, "
                                    f"{found[number][0][:12]} and {digest[:12]}",
                                    project.relative(index_path(project, declaration.spec)))
                found[number] = (digest, source.get("tla", {}))
    return found


def read_declaration(spec: Path, project: Project) -> Declaration:
    """The spec's search, evaluated with its default arguments, every field checked."""
    declaration = declared_search(spec, project, required=True)
    assert declaration is not None
    return declaration


def declared_search(spec: Path, project: Project, required: bool = False) -> Declaration | None:
    """The spec's search, or None where it declares none (a sweep, a plain experiment); with
    `required`, that is an error saying how to declare one."""
    from .evaluate import evaluate_snippet

    spec = Path(spec).resolve()
    where = project.relative(spec)
    if not spec.is_file():
        raise ExpcError(f"no such spec: {where}")
    if spec.suffix != ".jsonnet":
        raise ExpcError("a search is declared in a Jsonnet spec (expc.search.declare); CUE specs have none", where)
    snippet = (f"local spec = import {json.dumps(spec.name)};\n"
               "local result = if std.isFunction(spec) then spec() else spec;\n"
               "{ is_function: std.isFunction(spec),\n"
               "  kind: if !std.isObject(result) then std.type(result)\n"
               "        else if std.objectHas(result, 'schema') then 'experiment' else 'sweep',\n"
               "  search: if std.isObject(result) then std.get(result, 'search', null, true) else null }\n")
    # under the spec's own import rules and bounds: the declaration is a hidden field no build evaluates
    probe = json.loads(evaluate_snippet(spec, project, "<search>", snippet))
    if not required and (probe["kind"] != "experiment" or probe["search"] is None):
        return None
    if probe["kind"] != "experiment":
        raise ExpcError(f"a search runs one experiment per trial; the spec returns {probe['kind']} "
                        "(declare the search on one experiment: expc.search.declare(experiment, space, ...))", where)
    declared = probe["search"]
    if declared is None:
        raise ExpcError("the spec declares no search: return expc.search.declare(experiment, space, metric=..., "
                        "direction=..., trials=..., seed=...) from it", where)
    if not probe["is_function"]:
        raise ExpcError("a search varies the spec's top-level arguments, and this spec takes none: make it a "
                        "function, `function(lr=3e-4) expc.search.declare(...)`", where)
    if not isinstance(declared, dict):
        raise ExpcError("search must be an object (expc.search.declare makes one)", where)
    return _checked(declared, spec, where)


def _checked(declared: dict, spec: Path, where: str) -> Declaration:
    space = declared.get("space")
    if not isinstance(space, dict) or not space:
        raise ExpcError("search.space must be an object of top-level argument -> distribution, with at least "
                        "one argument", where)
    params = parameters(spec)
    dimensions = []
    for name, dist in sorted(space.items()):
        if name not in params:
            raise ExpcError(f"search.space.{name}: {name!r} is not a top-level argument of the spec"
                            f"{did_you_mean(name, params)}; it takes {', '.join(params) or 'none'}", where)
        dimensions.append(_dimension(name, dist, where))
    metric, direction = declared.get("metric"), declared.get("direction")
    if metric not in METRICS:
        raise ExpcError(f"search.metric must be one of {', '.join(METRICS)} (a record of metrics.jsonl), "
                        f"got {metric!r}", where)
    if direction not in DIRECTIONS:
        raise ExpcError(f"search.direction must be 'minimize' or 'maximize', got {direction!r}", where)
    trials, seed = declared.get("trials"), declared.get("seed")
    if not _whole(trials) or trials < 1:
        raise ExpcError(f"search.trials must be a whole number >= 1, got {trials!r}", where)
    if not _whole(seed) or seed < 0:
        raise ExpcError(f"search.seed must be a whole number >= 0, got {seed!r}", where)
    startup = declared.get("startup_trials", 10)
    if not _whole(startup) or startup < 0:
        raise ExpcError(f"search.startup_trials must be a whole number >= 0, got {startup!r}", where)
    name = declared.get("name", spec.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ExpcError(f"search.name must be letters, digits, '_', '.' or '-', got {name!r}", where)
    rules = parse_rules(declared.get("early_stopping", []), where, field="search.early_stopping")
    return Declaration(where, name, tuple(dimensions), metric, direction, int(trials), int(seed), int(startup), rules)


def _dimension(name: str, dist, where: str) -> Dimension:
    at = f"search.space.{name}"
    kind = dist.get("distribution") if isinstance(dist, dict) else None
    if kind not in ("uniform", "log_uniform", "int_uniform", "choice"):
        raise ExpcError(f"{at}: expected {DISTRIBUTIONS}, got {json.dumps(dist)}", where)
    if kind == "choice":
        values = dist.get("values")
        if not isinstance(values, list) or not values:
            raise ExpcError(f"{at}: choice needs a list of at least one value", where)
        if not all(v is None or isinstance(v, (str, int, float, bool)) for v in values):
            raise ExpcError(f"{at}: choice values are numbers, strings, booleans or null (a top-level argument "
                            "is JSON); choose among named presets by a string and pick it inside the spec", where)
        if len({json.dumps(v) for v in values}) != len(values):
            raise ExpcError(f"{at}: choice lists a value twice", where)
        return Dimension(name, "choice", values=tuple(values))
    low, high = dist.get("low"), dist.get("high")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in (low, high)):
        raise ExpcError(f"{at}: low and high must be numbers, got {low!r}, {high!r}", where)
    if not low < high:
        raise ExpcError(f"{at}: low must be below high, got {low:g}, {high:g}", where)
    log = kind == "log_uniform" or bool(dist.get("log", False))
    if log and low <= 0:
        raise ExpcError(f"{at}: a log scale needs low > 0, got {low:g}", where)
    if kind != "int_uniform":
        return Dimension(name, kind, float(low), float(high))
    step = dist.get("step", 1)
    if not (_whole(low) and _whole(high)):
        raise ExpcError(f"{at}: int needs whole-number bounds, got {low:g}, {high:g}", where)
    if not _whole(step) or step < 1:
        raise ExpcError(f"{at}: step must be a whole number >= 1, got {step!r}", where)
    if log and step != 1:
        raise ExpcError(f"{at}: a log scale takes step 1 (Optuna samples the exponent), got {step}", where)
    if (high - low) % step:
        raise ExpcError(f"{at}: high - low ({high - low:g}) must be a multiple of step {step}", where)
    return Dimension(name, "int", int(low), int(high), log, int(step))


def _whole(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == int(x)


def parameters(spec: Path) -> list[str]:
    """The spec's top-level arguments, read off its text (Jsonnet does not list them)."""
    from .evaluate import blank_comments

    text = blank_comments(spec.read_text(encoding="utf-8"))
    header = re.search(r"^\s*function\s*\(", text, re.M)
    if not header:
        return []
    names, depth, start, quote = [], 0, header.end(), None
    for i in range(header.end(), len(text)):
        c = text[i]
        if quote:
            quote = None if c == quote and text[i - 1] != "\\" else quote
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}" and depth:
            depth -= 1
        elif c in ",)" and depth == 0:
            found = re.match(r"\s*([A-Za-z_]\w*)", text[start:i])
            if found:
                names.append(found[1])
            start = i + 1
            if c == ")":
                break
    return names
