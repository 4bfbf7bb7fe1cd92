"""`expc build`'s preview of a sweep, before anything runs: how many members, the table of
axes, how many members already have a completed run (wherever the runs folder is: the same
digest is the same run), and the device-hours of the rest.

The cost is `expc plan`'s: the one estimator (expc.estimate.device_hours) at the MFU an earlier
run of the same model on the same hardware measured, else the default (plan.measured_mfu).
The early-stopping rules beside the sweep (compile/stopping.py) are shown as the lib calls that
declare them, so they are reviewed with the members.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from expc import estimate
from expc.axes import axes_table
from expc.project import Project

from .plan import measured_mfu


@dataclass
class SweepPreview:
    spec: str
    names: list[str]
    axes: dict[str, list[str]] | None  # None: members named by hand (variants)
    completed: int
    remaining_device_hours: float
    mfu_sources: list[str] = field(default_factory=list)
    early_stopping: list[str] = field(default_factory=list)  # the rules beside the sweep, as the lib calls

    @property
    def count(self) -> int:
        return len(self.names)


def run_status(project: Project, digest: str) -> str | None:
    """The status in <runs>/<digest>/metadata.json; None when it never ran here."""
    try:
        return json.loads((project.runs / digest / "metadata.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def previews(manifests, project: Project) -> list[SweepPreview]:
    """One preview per spec whose manifests are sweep members, in the order built."""
    collected = Previews(project)
    for m in manifests:
        collected.add(m)
    return collected.result(manifests)


class Previews:
    """The previews gathered one manifest at a time, while each manifest's data is in hand
    (`expc build` hands `add` to the build as its `observe`: a big sweep's members are not
    read back from their files for the estimate)."""

    def __init__(self, project: Project):
        self.project = project
        self.figures: dict[str, dict] = {}  # spec -> completed, hours, MFU sources
        self.mfu_cache: dict[tuple, object] = {}
        self.runs: set[str] | None = None

    def add(self, m) -> None:
        if not m.name:
            return
        figures = self.figures.setdefault(m.spec, {"completed": 0, "hours": 0.0, "sources": [], "seen": set()})
        if m.digest in figures["seen"]:
            return
        figures["seen"].add(m.digest)
        if self.runs is None:  # the runs folder listed once: most members of a new sweep never ran
            try:
                self.runs = set(os.listdir(self.project.runs))
            except OSError:
                self.runs = set()
        if m.digest in self.runs and run_status(self.project, m.digest) == "completed":
            figures["completed"] += 1
            return
        # one scan of the runs folder per model and hardware, not one per member
        key = (json.dumps(m.data["model"], sort_keys=True), m.data["hardware"]["name"],
               estimate.recompute_factor(m.data))
        if key not in self.mfu_cache:
            self.mfu_cache[key] = measured_mfu(m.data, self.project)
        mfu = self.mfu_cache[key]
        figures["hours"] += estimate.device_hours(m.data, mfu.value)
        if mfu.source not in figures["sources"]:
            figures["sources"].append(mfu.source)

    def result(self, manifests) -> list[SweepPreview]:
        from expc.compile.stopping import read_rules

        by_spec: dict[str, list] = {}
        for m in manifests:
            if m.name:
                by_spec.setdefault(m.spec, []).append(m)
        out = []
        for spec, members in by_spec.items():
            figures = self.figures.get(spec)
            if figures is None or len(figures["seen"]) < len({m.digest for m in members}):
                for m in members:  # not all seen by add: the rest now
                    self.add(m)
                figures = self.figures[spec]
            rules = members[0].rules
            if rules is None:  # not read by this build
                rules = read_rules(self.project.root / spec, self.project, members[0].tla)
            names = [m.name for m in members]
            out.append(SweepPreview(spec, names, axes_table(names), figures["completed"], figures["hours"],
                                    figures["sources"], [rule.call() for rule in rules]))
        return out


def render(preview: SweepPreview, runs_shown: str) -> str:
    lines = [f"{preview.spec}: {preview.count} member{'s' if preview.count != 1 else ''}"]
    if preview.axes:
        width = max(len(a) for a in preview.axes)
        lines.append(f"  {'axis':<{width}}  values")
        for axis, labels in preview.axes.items():
            shown = ", ".join(labels) if len(labels) <= 8 else ", ".join(labels[:6]) + f", ... ({len(labels)} values)"
            lines.append(f"  {axis:<{width}}  {shown}")
    else:
        lines.append("  members named by hand: " + ", ".join(preview.names[:8]) + (" ..." if preview.count > 8 else ""))
    rest = preview.count - preview.completed
    lines.append(f"  completed runs in {runs_shown}/: {preview.completed} of {preview.count}")
    if rest:
        mfu = "; ".join(preview.mfu_sources)
        lines.append(f"  to run: {rest} member{'s' if rest != 1 else ''}, {_hours(preview.remaining_device_hours)} "
                     f"device-hours estimated (MFU: {mfu}; `expc plan` has the details)")
    else:
        lines.append("  to run: nothing (every member has a completed run)")
    if preview.early_stopping:
        lines.append("  early stopping (`expc run --parallel` applies it):")
        lines += [f"    expc.sweep.{call}" for call in preview.early_stopping]
    return "\n".join(lines)


def _hours(value: float) -> str:
    return f"{value:.3g}"
