"""Early stopping declared beside a sweep: `expc.sweep.stop_when(sweep, [rules])` puts the rules
in a hidden field of the sweep object, `early_stopping`, so they are reviewed with the spec but
are in no member's manifest: a member is the same digest, the same run, in any sweep.

The executor reads them here, from the spec's own result (its --tla applied; `--set` and
`--sweep` patch members, not the sweep, so they leave the rules as the spec wrote them).

    threshold   {rule: 'threshold', metric: 'val_loss', above: x, at_step: k}: stop a member whose
                metric, at its first record at or after step k, is above x
    median      {rule: 'median', metric: 'val_loss', startup: 5, warmup: 0}: Optuna's MedianPruner
                (its defaults): once `startup` members have completed, stop a member whose best
                value so far is worse than the median of the completed members' values at its
                latest step (steps before `warmup` are never judged)
"""
from __future__ import annotations

import json
import statistics
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

    def decide(self, records: list[dict], completed=()) -> dict | None:
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


@dataclass(frozen=True)
class Median:
    metric: str = "val_loss"
    startup: int = 5
    warmup: int = 0

    def describe(self) -> str:
        return f"stop if the best {self.metric} is worse than the median of completed members (after {self.startup})"

    def decide(self, records: list[dict], completed=()) -> dict | None:
        """As optuna.pruners.MedianPruner decides for minimisation: None (no decision) until
        `startup` members completed, before `warmup`, or when no completed member has a value
        at this member's latest step."""
        values = [(r["step"], r[self.metric]) for r in records
                  if isinstance(r.get(self.metric), (int, float)) and "step" in r]
        if len(completed) < self.startup or not values:
            return None
        step = values[-1][0]
        if step < self.warmup:
            return None
        others = [v for other in completed for s, v in
                  ((r.get("step"), r.get(self.metric)) for r in other) if s == step and isinstance(v, (int, float))]
        if not others:
            return None
        best, median = min(v for _, v in values), statistics.median(others)
        stop = best > median
        return {"rule": self.describe(), "step": step, "value": best, "stop": stop,
                "comparison": f"best {self.metric} {best:.4f} {'>' if stop else '<='} median {median:.4f} "
                              f"of {len(others)} completed at step {step}"}


def read_rules(spec: Path, project: Project, tla: dict | None = None) -> list:
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
    return parse_rules(rules, where)


def parse_rules(rules, where: str, field: str = "early_stopping") -> list:
    """Rules as the lib writes them -> Threshold and Median; `field` names them in messages."""
    if not isinstance(rules, list):
        raise ExpcError(f"{field} must be a list of rules", where)
    out = []
    for i, rule in enumerate(rules):
        at = f"{where}: {field}[{i}]"
        if not isinstance(rule, dict) or rule.get("rule") not in ("threshold", "median"):
            raise ExpcError("a rule is expc.sweep.threshold(metric, above, at_step) or "
                            "expc.sweep.median(metric, startup, warmup)", at)
        if rule.get("metric") not in METRICS:
            raise ExpcError(f"metric must be one of {', '.join(METRICS)}, got {rule.get('metric')!r}", at)
        if rule["rule"] == "median":
            counts = (rule.get("startup"), rule.get("warmup"))
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise ExpcError("startup and warmup must be whole numbers >= 0", at)
            out.append(Median(rule["metric"], *counts))
            continue
        step = rule.get("at_step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0 or \
                not isinstance(rule.get("above"), (int, float)) or isinstance(rule.get("above"), bool):
            raise ExpcError("above must be a number and at_step a whole number >= 0", at)
        out.append(Threshold(rule["metric"], float(rule["above"]), step))
    return out


def first_stop(rules: list, records: list[dict], completed=()) -> dict | None:
    """The first rule that stops the run on these records (given the completed members'
    records, for the median), as its decision; None otherwise."""
    for rule in rules:
        decision = rule.decide(records, completed)
        if decision and decision["stop"]:
            return decision
    return None
