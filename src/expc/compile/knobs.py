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


# Jsonnet: `probe(e, last)`, the probe of a streamed build (evaluate.stream_code), one member at a
# time. `.sent` is what info(e) says, less what the member before already sent (`last`, its
# `.next`): the knob table and the field names only when they differ from the last member's
# (in a grid they never do, and writing the table out for every member was a fifth of the
# evaluation's time), and the values of the table's knobs, in its order ([] for one the member
# lacks or holds a function in). The hidden fields are the names the document lacks: the reader
# (StreamProbe) works them out.
#
# `.next` is made by `carry`, whose object holds nothing but the two values, forced: an object
# made inside `probe` would hold probe's whole scope, `last` with it, and so every member before
# (a 10,000-member build grew by 500 MB before this).
STREAM_PROBE = """
local carry(declared, fields) =
  if std.type(declared) == '' || std.type(fields) == '' then error 'not reached'
  else { declared: declared, fields: fields };
local probe(e, last) =
  if !std.isObject(e) || !std.objectHasAll(e, 'knobs') || !std.isObject(e.knobs) then
    { sent: null, next: carry(null, null) }
  else
    local declared = e.knobs, fields = std.objectFieldsAll(e);
    { sent: { [if declared == last.declared then null else 'declared']: declared,
              [if fields == last.fields then null else 'fields']: fields,
              values: [if std.objectHasAll(e, k) && !std.isFunction(e[k]) then [e[k]] else []
                       for k in std.objectFields(declared)] },
      next: carry(declared, fields) };
"""


class StreamProbe:
    """Reads STREAM_PROBE's `.sent`, member after member, into info(e)'s form, and says whether
    the member's knobs are right. A member whose probe and fields are the same as one seen since
    the table and names last changed (every member of a grid over `seed`) is not checked again."""

    def __init__(self, sections):
        self.sections, self.checkers = sections, {}
        self.declared, self.fields, self.order, self.since = None, None, [], 0
        self.verdicts: dict[tuple, bool] = {}

    def clean(self, member: str, sent: bytes, keys: tuple) -> bool:
        if sent == b"null":
            return True
        probe = json.loads(sent)
        if "declared" in probe:
            self.declared, self.order, self.since = probe["declared"], sorted(probe["declared"]), self.since + 1
        if "fields" in probe:
            self.fields, self.since = probe["fields"], self.since + 1
        key = (self.since, sent, keys)
        if key not in self.verdicts:
            if len(self.verdicts) > 10_000:  # a sweep over a knob: each member's values differ
                self.verdicts.clear()
            visible = set(keys)
            hidden = [f for f in self.fields if f not in visible]
            values = {k: v[0] for k, v in zip(self.order, probe["values"]) if v and k not in visible}
            info = {"hidden": hidden, "declared": self.declared, "values": values}
            self.verdicts[key] = not problems({member: info}, self.sections, lambda name, m: None, self.checkers)
        return self.verdicts[key]


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
