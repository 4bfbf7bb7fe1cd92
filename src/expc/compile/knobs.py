"""Stage 3, knobs: the hidden fields of each experiment must be declared, and hold the type
their declaration says.

A knob is a hidden field (`lr:: 3e-4`) that shapes the manifest without being in it. The lib
declares its knobs in the experiment's `knobs::` table, as JSON Schema, with the names other
tools use for the same thing (`aliases`); a lib part or a spec declares more with
`knobs+:: { name: { type: 'number' } }`. Without declarations a typo (`learning_rate:: 1e-3`,
`warmup_step:: 100`) would build with the default and no word, and a string learning rate
(`lr:: '3e-4'`) would build a manifest that fails inside torch after launch.

A spec that does not start from the lib's experiment (no `knobs` table) is not checked; a hidden
field named like a manifest section (`logging:: super.logging`) hides that section, it is not a
knob.
"""
from __future__ import annotations

import json

from expc.errors import Problem, did_you_mean, members_note

# Hidden fields the lib reserves, which are not knobs: the knob table itself, and a search
# declared beside the experiment (lib/search.libsonnet), read by `expc search`, in no manifest.
RESERVED = ("knobs", "search")

# Jsonnet: `info(e)`, for one experiment its hidden fields (sorted; a filter, not std.setDiff,
# which go-jsonnet runs as Jsonnet at twice the cost), its knob table and the knobs' values.
INFO = """
local info(e) =
  if !std.isObject(e) || !std.objectHasAll(e, 'knobs') || !std.isObject(e.knobs) then null
  else
    local hidden = [k for k in std.objectFieldsAll(e) if !std.objectHas(e, k)];
    { hidden: hidden, declared: e.knobs,
      values: { [k]: e[k] for k in hidden if std.objectHas(e.knobs, k) && !std.isFunction(e[k]) } };
"""
_INFO = INFO + """
if !std.isObject(value) then {}
else if std.objectHas(value, 'schema') then { '': info(value) }
else { [m]: info(value[m]) for m in std.objectFields(value) }
"""


def snippet(value_code: str) -> str:
    """The probe, after Jsonnet that binds `value` to the spec's result."""
    return value_code + _INFO


def problems(info: dict, sections, where, checkers: dict | None = None) -> list[Problem]:
    """Problems from the probe's result, one per distinct mistake across sweep members.

    `sections`: the manifest's top-level keys. `where(name, member)`: the file:line that sets a
    hidden field, or None. `checkers`: validators made by earlier calls, to use again.
    """
    found: dict[tuple, list[str]] = {}
    checkers = {} if checkers is None else checkers
    for member, experiment in info.items():
        if experiment is None:
            continue
        declared = experiment["declared"]
        for name in experiment["hidden"]:
            if name in RESERVED or name in sections:
                continue
            if name not in declared:
                found.setdefault(("undeclared", name, ""), []).append(member)
                continue
            message = _type_problem(name, declared[name], experiment["values"].get(name, _ABSENT), checkers)
            if message:
                found.setdefault(("type", name, message), []).append(member)
    out = []
    for (kind, name, message), members in found.items():
        declared = next(info[m]["declared"] for m in members)
        if kind == "undeclared":
            hint = _knob_hint(name, declared)
            known = "" if hint else f"; the knobs are {', '.join(sorted(declared))}"
            message = (f"{name} is not a knob{hint}{known} (declare a new one with "
                       f"knobs+:: {{ {name}: {{ type: 'number' }} }})")
        out.append(Problem(message + members_note(members, len(info)), where(name, members[0])))
    return out


_ABSENT = object()


def _type_problem(name: str, declaration, value, checkers: dict) -> str | None:
    import jsonschema_rs

    if value is _ABSENT or not isinstance(declaration, dict):
        return None
    schema = {k: v for k, v in declaration.items() if k not in ("aliases", "description")}
    key = json.dumps(schema, sort_keys=True)
    if key not in checkers:
        try:
            checkers[key] = jsonschema_rs.validator_for(schema)
        except (ValueError, jsonschema_rs.ValidationError) as err:
            return f"knob {name}: its declaration is not a valid JSON Schema ({err})"
    error = next(iter(checkers[key].iter_errors(value)), None)
    return f"knob {name}: {error.message}" if error else None


def _knob_hint(name: str, declared: dict) -> str:
    """The knob whose name or alias is closest to `name`: `learning_rate` -> `lr`."""
    for knob, declaration in declared.items():
        if isinstance(declaration, dict) and name in (declaration.get("aliases") or []):
            return f' (did you mean "{knob}"?)'
    return did_you_mean(name, declared)
