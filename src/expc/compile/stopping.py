"""Early stopping declared beside a sweep: `expc.sweep.stop_when(sweep, [rules])` puts the rules
in a hidden field of the sweep object, `early_stopping`, so they are reviewed with the spec but
are in no member's manifest: a member is the same digest, the same run, in any sweep.

The executor reads them here, from the spec's own result (its --tla applied; `--set` and
`--sweep` patch members, not the sweep, so they leave the rules as the spec wrote them).

    threshold   {rule: 'threshold', metric: 'val_loss', above: x, at_step: k}: stop a member whose
                metric, at its first record at or after step k, is above x
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from expc.errors import ExpcError
from expc.project import Project

METRICS = ("val_loss", "loss")


@dataclass(frozen=True)
class Threshold:
    metric: str
    above: float
    at_step: int

    def describe(self) -> str:
        return f"stop if {self.metric} > {self.above:g} at step {self.at_step}"

    def decide(self, records: list[dict]) -> dict | None:
        """The decision, once the metric's first record at or after at_step exists: a dict
        (rule, step, value, comparison, stop) for the run folder; None before that."""
        for r in records:
            if self.metric in r and r.get("step", -1) >= self.at_step and isinstance(r[self.metric], (int, float)):
                value = r[self.metric]
                stop = value > self.above
                return {"rule": self.describe(), "step": r["step"], "value": value, "stop": stop,
                        "comparison": f"{self.metric} {value:.4f} {'>' if stop else '<='} {self.above:g} "
                                      f"at step {r['step']}"}
        return None


def read_rules(spec: Path, project: Project, tla: dict | None = None) -> list[Threshold]:
    import _gojsonnet

    spec = Path(spec).resolve()
    lib = project.lib.resolve()

    def resolve(importer_dir: str, rel: str):
        for base in (Path(importer_dir or spec.parent), lib):
            if (base / rel).is_file():
                return str(base / rel), (base / rel).read_bytes()
        raise RuntimeError(f"import {rel!r} not found")

    args = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted((tla or {}).items()))
    snippet = (f"local spec = import {json.dumps(spec.name)};\n"
               f"local result = if std.isFunction(spec) then spec({args}) else spec;\n"
               "if std.isObject(result) then std.get(result, 'early_stopping', [], true) else []\n")
    where = project.relative(spec)
    try:
        rules = json.loads(_gojsonnet.evaluate_snippet(str(spec.parent / "<early_stopping>"), snippet,
                                                       import_callback=resolve))
    except RuntimeError as err:
        raise ExpcError(f"reading early_stopping: {str(err).splitlines()[0]}", where) from None
    if not isinstance(rules, list):
        raise ExpcError("early_stopping must be a list of rules", where)
    out = []
    for i, rule in enumerate(rules):
        at = f"{where}: early_stopping[{i}]"
        if not isinstance(rule, dict) or rule.get("rule") != "threshold":
            raise ExpcError("a rule is {rule: 'threshold', metric, above, at_step} "
                            "(expc.sweep.threshold(metric, above, at_step))", at)
        if rule.get("metric") not in METRICS:
            raise ExpcError(f"metric must be one of {', '.join(METRICS)}, got {rule.get('metric')!r}", at)
        step = rule.get("at_step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0 or \
                not isinstance(rule.get("above"), (int, float)) or isinstance(rule.get("above"), bool):
            raise ExpcError("above must be a number and at_step a whole number >= 0", at)
        out.append(Threshold(rule["metric"], float(rule["above"]), step))
    return out


def first_stop(rules: list[Threshold], records: list[dict]) -> dict | None:
    """The first rule that stops the run on these records, as its decision; None otherwise."""
    for rule in rules:
        decision = rule.decide(records)
        if decision and decision["stop"]:
            return decision
    return None
