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
    successive_halving
                {rule: 'successive_halving', metric: 'val_loss', min_resource: 'auto',
                reduction_factor: 4, min_early_stopping_rate: 0}: Optuna's SuccessiveHalvingPruner
                (asynchronous successive halving, its defaults): rung k ends at step
                min_resource * reduction_factor^(min_early_stopping_rate + k); a member that
                reaches it goes on only if its value there is among the best 1/reduction_factor
                of every member that reached that rung so far (the first reduction_factor - 1 to
                arrive: only if it is the best). 'auto': the last step of the completed members,
                divided by 100 (at least 1); no decision before one member completed.

A rule decides from a member's metrics.jsonl records and its peers': the sweep's other members
as their run folders show them now (`Peer`). Each rule is decided live, once per new record, as
Optuna's pruners are once per report (`decide(records, peers)` judges the latest record), and
again, for a member an earlier sweep stopped, on its whole history (`again=True`: would this
sweep's rules stop it, or let it resume?).
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from expc.errors import ExpcError
from expc.project import Project

METRICS = ("val_loss", "loss")


@dataclass(frozen=True)
class Peer:
    """Another member of the sweep: its metrics.jsonl records as they are now, whether it
    completed, and, while it is pruned, the decision that stopped it (its history ends there)."""
    records: list[dict] = field(default_factory=list)
    completed: bool = False
    stopped_by: dict | None = None


def series(records: list[dict], metric: str) -> list[tuple[int, float]]:
    """(step, value) of every record with the metric, in order."""
    return [(r["step"], r[metric]) for r in records
            if isinstance(r.get(metric), (int, float)) and not isinstance(r.get(metric), bool) and "step" in r]


def _fresh(records: list[dict], metric: str) -> bool:
    """Whether the latest record reports the metric: a live decision is taken then only."""
    return bool(records) and isinstance(records[-1].get(metric), (int, float)) and "step" in records[-1]


@dataclass(frozen=True)
class Threshold:
    metric: str
    above: float
    at_step: int
    uses_peers = False

    def describe(self) -> str:
        return f"stop if {self.metric} > {self.above:g} at step {self.at_step}"

    def call(self) -> str:
        return f"threshold('{self.metric}', {self.above:g}, {self.at_step})"

    def decide(self, records: list[dict], peers=(), again: bool = False) -> dict | None:
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
    uses_peers = True

    def describe(self) -> str:
        return f"stop if the best {self.metric} is worse than the median of completed members (after {self.startup})"

    def call(self) -> str:
        return f"median('{self.metric}', {self.startup}, {self.warmup})"

    def decide(self, records: list[dict], peers=(), again: bool = False) -> dict | None:
        """As optuna.pruners.MedianPruner decides for minimisation: None (no decision) until
        `startup` members completed, before `warmup`, or when no completed member has a value
        at this member's latest step."""
        values = series(records, self.metric)
        completed = [p.records for p in peers if p.completed]
        if len(completed) < self.startup or not values or not (again or _fresh(records, self.metric)):
            return None
        step = values[-1][0]
        if step < self.warmup:
            return None
        others = [v for other in completed for s, v in series(other, self.metric) if s == step]
        if not others:
            return None
        best, median = min(v for _, v in values), statistics.median(others)
        stop = best > median
        return {"rule": self.describe(), "step": step, "value": best, "stop": stop,
                "comparison": f"best {self.metric} {best:.4f} {'>' if stop else '<='} median {median:.4f} "
                              f"of {len(others)} completed at step {step}"}


@dataclass(frozen=True)
class SuccessiveHalving:
    metric: str = "val_loss"
    min_resource: int | str = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    uses_peers = True

    def describe(self) -> str:
        return (f"successive halving on {self.metric} (min_resource {self.min_resource}, reduction factor "
                f"{self.reduction_factor}, min early-stopping rate {self.min_early_stopping_rate})")

    def call(self) -> str:
        resource = f"'{self.min_resource}'" if isinstance(self.min_resource, str) else self.min_resource
        return (f"successive_halving('{self.metric}', {resource}, {self.reduction_factor}, "
                f"{self.min_early_stopping_rate})")

    def resource(self, peers) -> int | None:
        """min_resource; for 'auto', as Optuna estimates it: the last step at which a completed
        member reported the metric, the largest of them, // 100, at least 1 (None before any)."""
        if self.min_resource != "auto":
            return self.min_resource
        last = [values[-1][0] for p in peers if p.completed for values in [series(p.records, self.metric)] if values]
        return max(max(last) // 100, 1) if last else None

    def rung_step(self, resource: int, rung: int) -> int:
        """The step at which rung `rung` is complete (its promotion step)."""
        return resource * self.reduction_factor ** (self.min_early_stopping_rate + rung)

    def rungs(self, values: list[tuple[int, float]], resource: int) -> list[tuple[int, int, float]]:
        """(rung, step, value) of every rung this history reached: a rung's value is the one
        reported at the first step at or after its promotion step, where Optuna records it
        (one report may complete several rungs, each with that value)."""
        out = []
        for step, value in values:
            while step >= self.rung_step(resource, len(out)):
                out.append((len(out), step, value))
        return out

    def peer_rungs(self, peer: Peer, resource: int) -> dict[int, float]:
        """rung -> value for a peer, as Optuna would have recorded them: a rung is recorded
        before the peer is judged there, so a pruned peer keeps the rung it was stopped at, and
        none after; a NaN value stops the peer without being recorded."""
        values = series(peer.records, self.metric)
        limit = None
        if peer.stopped_by is not None:
            values = [(s, v) for s, v in values if s <= peer.stopped_by.get("step", math.inf)]
            if peer.stopped_by.get("rule") == self.describe():
                limit = peer.stopped_by.get("rung")
        out = {}
        for rung, _, value in self.rungs(values, resource):
            if math.isnan(value) or (limit is not None and rung > limit):
                break
            out[rung] = value
        return out

    def decide(self, records: list[dict], peers=(), again: bool = False) -> dict | None:
        """As optuna.pruners.SuccessiveHalvingPruner decides for minimisation, asynchronously:
        live, the rungs the latest record completes, each against the values every peer
        recorded at that rung; again, every rung the member reached, against the peers now.
        None when no rung is judged."""
        values = series(records, self.metric)
        if not values or not (again or _fresh(records, self.metric)):
            return None
        resource = self.resource(peers)
        if resource is None:
            return None
        reached = self.rungs(values, resource)
        judged = reached if again else [r for r in reached if r[1] == values[-1][0]]
        decision = None
        others = [self.peer_rungs(p, resource) for p in peers]
        for rung, step, value in judged:
            where = f"at rung {rung} (step >= {self.rung_step(resource, rung)})"
            base = {"rule": self.describe(), "rung": rung, "step": step, "value": value}
            if math.isnan(value):
                return {**base, "stop": True, "comparison": f"{self.metric} is NaN at step {step}, {where}"}
            competing = sorted([o[rung] for o in others if rung in o] + [value])
            # among the best len // reduction_factor (the first to arrive: only the best)
            keep = max(len(competing) // self.reduction_factor, 1)
            cut = competing[keep - 1]
            stop = value > cut
            decision = {**base, "stop": stop, "comparison": (
                f"{self.metric} {value:.4f} at step {step} {'>' if stop else '<='} {cut:.4f}: "
                f"{'not ' if stop else ''}among the best {keep} of {len(competing)} members {where}"
                + ("" if stop else ", promoted"))}
            if stop:
                return decision
        return decision



def _count(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def read_rules(spec: Path, project: Project, tla: dict | None = None) -> list:
    """The rules beside a Jsonnet sweep ([] without any; the CUE lib declares none)."""
    spec = Path(spec).resolve()
    if spec.suffix != ".jsonnet":
        return []
    from .evaluate import RULES_OF_RESULT, evaluate_snippet

    args = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted((tla or {}).items()))
    snippet = (f"local spec = import {json.dumps(spec.name)};\n"
               f"local result = if std.isFunction(spec) then spec({args}) else spec;\n"
               f"{RULES_OF_RESULT}\n")
    # under the spec's own import rules and bounds: a hidden field no build evaluated
    rules = json.loads(evaluate_snippet(spec, project, "<early_stopping>", snippet))
    where = project.relative(spec)
    return parse_rules(rules, where)


def parse_rules(rules, where: str, field: str = "early_stopping") -> list:
    """Rules as the lib writes them -> Threshold and Median; `field` names them in messages."""
    if not isinstance(rules, list):
        raise ExpcError(f"{field} must be a list of rules", where)
    out = []
    for i, rule in enumerate(rules):
        at = f"{where}: {field}[{i}]"
        if not isinstance(rule, dict) or rule.get("rule") not in ("threshold", "median", "successive_halving"):
            raise ExpcError("a rule is expc.sweep.threshold(metric, above, at_step), "
                            "expc.sweep.median(metric, startup, warmup) or expc.sweep.successive_halving(metric, "
                            "min_resource, reduction_factor, min_early_stopping_rate)", at)
        if rule.get("metric") not in METRICS:
            raise ExpcError(f"metric must be one of {', '.join(METRICS)}, got {rule.get('metric')!r}", at)
        if rule["rule"] == "median":
            counts = (rule.get("startup"), rule.get("warmup"))
            if not all(_count(c, 0) for c in counts):
                raise ExpcError("startup and warmup must be whole numbers >= 0", at)
            out.append(Median(rule["metric"], *counts))
            continue
        if rule["rule"] == "successive_halving":
            resource = rule.get("min_resource")
            if resource != "auto" and not _count(resource, 1):
                raise ExpcError(f"min_resource must be 'auto' or a whole number >= 1, got {json.dumps(resource)}", at)
            if not _count(rule.get("reduction_factor"), 2):
                raise ExpcError(f"reduction_factor must be a whole number >= 2, got "
                                f"{json.dumps(rule.get('reduction_factor'))}", at)
            if not _count(rule.get("min_early_stopping_rate"), 0):
                raise ExpcError(f"min_early_stopping_rate must be a whole number >= 0, got "
                                f"{json.dumps(rule.get('min_early_stopping_rate'))}", at)
            out.append(SuccessiveHalving(rule["metric"], resource, rule["reduction_factor"],
                                         rule["min_early_stopping_rate"]))
            continue
        step = rule.get("at_step")
        above = rule.get("above")
        if not _count(step, 0) or not isinstance(above, (int, float)) or isinstance(above, bool):
            raise ExpcError("above must be a number and at_step a whole number >= 0", at)
        out.append(Threshold(rule["metric"], float(rule["above"]), step))
    return out


def first_stop(rules: list, records: list[dict], peers=(), again: bool = False) -> dict | None:
    """The first rule that stops the run on these records (given the sweep's other members,
    for the median and successive halving), as its decision; None otherwise."""
    for rule in rules:
        decision = rule.decide(records, peers, again)
        if decision and decision["stop"]:
            return decision
    return None
