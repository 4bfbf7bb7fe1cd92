"""`expc plan`: a spec, a manifest or a digest prefix -> memory, compute and cost per device for
each of its runs, before any of them starts.

Every figure comes from the one estimator (expc.estimate); the hints and `--fit` from expc.fit,
which applies each change to a copy of the manifest and estimates it again. A spec is compiled
in memory without the build's fit check, so a run that does not fit gets its breakdown and hints
instead of a refusal. The MFU is a default or what an earlier run of the same model on the same
hardware measured (its runs/<digest>/metrics.jsonl). Figures and formulas: docs/plan.md.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from expc import estimate, fit
from expc.errors import ExpcError
from expc.project import Project, find_manifest

GIB_FIELDS = ("parameters", "gradients", "optimizer", "activations", "buffers", "fragmentation", "total")


@dataclass
class Mfu:
    value: float
    source: str  # "default" or "measured by run <digest12> (median of N log lines)"


@dataclass
class Plan:
    """The figures of one run."""

    label: str
    digest: str
    manifest: dict
    memory: estimate.MemoryEstimate
    mfu: Mfu
    hints: list[fit.Change] = field(default_factory=list)
    largest: fit.Change | None = None  # --fit
    asked_fit: bool = False

    @property
    def device_memory(self) -> float:
        return self.manifest["hardware"]["device_memory_gib"]

    @property
    def fits(self) -> bool:
        return self.memory.total <= self.device_memory

    @property
    def utilisation(self) -> float:
        return fit.utilisation(self.manifest, self.mfu.value)

    def figures(self) -> dict:
        m = self.manifest
        step = estimate.step_seconds(m, self.mfu.value)
        return {
            "parameters": estimate.held_parameters(m),
            "trainable_parameters": estimate.trainable_parameters(m),
            "world_size": estimate.world_size(m),
            "tokens_per_step": estimate.tokens_per_step(m),
            "flops_per_token": estimate.flops_per_token(m),
            "flops_per_step": estimate.flops_per_token(m) * estimate.tokens_per_step(m),
            "step_seconds": step,
            "tokens_per_second": estimate.tokens_per_step(m) / step,
            "steps": m["train"]["max_steps"],
            "wall_hours": step * m["train"]["max_steps"] / 3600,
            "device_hours": estimate.device_hours(m, self.mfu.value),
        }


def plan_target(target: str, project: Project, tla: dict | None = None, sets=(), engine: str = "gojsonnet",
                largest: bool = False, sweeps=()) -> list[Plan]:
    """A spec (every member of a sweep), a manifest file or a digest prefix -> one Plan per run."""
    from expc.compile import canonical

    if target.endswith((".jsonnet", ".libsonnet", ".cue")):
        from expc.compile import compile_spec

        if not Path(target).is_file():
            raise ExpcError(f"no such spec: {target}")
        manifests = compile_spec(target, project, tla, sets, engine, sweeps=sweeps, fit_check=False)
        runs = [(m.name or m.spec, m.digest, m.data) for m in manifests]
    else:
        path = find_manifest(target, project)
        data, digest = canonical.load_manifest(path)
        runs = [(project.relative(path), digest, data)]
    return [plan_manifest(label, digest, data, project, largest) for label, digest, data in runs]


def plan_manifest(label: str, digest: str, manifest: dict, project: Project, largest: bool = False) -> Plan:
    memory = estimate.memory_per_device(manifest)
    plan = Plan(label, digest, manifest, memory, measured_mfu(manifest, project), asked_fit=largest)
    if not plan.fits:
        plan.hints = fit.fitting_changes(manifest, plan.utilisation)
    if largest:
        plan.largest = fit.largest_micro_batch(manifest, plan.utilisation)
    return plan


def measured_mfu(manifest: dict, project: Project) -> Mfu:
    """The MFU an earlier run of the same model (the whole `model` section) on the same hardware
    profile measured: the median over its metrics.jsonl training lines, leaving out the first
    (start-up). The most recent such run counts; without one, the default."""
    best = None
    runs = project.runs
    if runs.is_dir():
        for folder in sorted(runs.iterdir()):
            try:
                other = json.loads((folder / "manifest.json").read_text())
                lines = (folder / "metrics.jsonl").read_text().splitlines()
                meta = json.loads((folder / "metadata.json").read_text()) if (folder / "metadata.json").is_file() else {}
            except (OSError, ValueError):
                continue
            if other.get("model") != manifest["model"] or other.get("hardware", {}).get("name") != manifest["hardware"]["name"]:
                continue
            values = [r["mfu"] for r in map(_record, lines) if isinstance(r.get("mfu"), (int, float)) and r["mfu"] > 0]
            values = values[1:] if len(values) > 1 else values
            if not values:
                continue
            when = meta.get("end") or meta.get("session_start") or ""
            if best is None or when > best[0]:
                best = (when, folder.name, statistics.median(values), len(values))
    if best is None:
        # The default is for a run that does not recompute; recomputation is device work that
        # the MFU (model FLOPs only) does not count.
        factor = estimate.recompute_factor(manifest)
        if factor == 1:
            return Mfu(estimate.DEFAULT_MFU, "default")
        return Mfu(estimate.DEFAULT_MFU / factor, f"the default {estimate.DEFAULT_MFU:.0%} less recomputation")
    _, name, value, count = best
    return Mfu(min(value, 1.0), f"measured by run {name[:12]} (median of {count} log line(s))")


def _record(line: str) -> dict:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- output ------------------------------------------------------------------------------------

def _gib(value: float) -> str:
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def _count(value: float) -> str:
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _seconds(value: float) -> str:
    if value < 1e-3:
        return f"{value * 1e6:.3g} us"
    if value < 1:
        return f"{value * 1e3:.3g} ms"
    return f"{value:.3g} s"


def render_text(plans: list[Plan]) -> str:
    blocks = [_render_one(p) for p in plans]
    if len(plans) > 1:
        blocks.append(_render_sweep(plans))
    return "\n".join(blocks)


def _render_one(p: Plan) -> str:
    m, mem, f = p.manifest, p.memory, p.figures()
    zero = (m["deepspeed"].get("zero_optimization") or {}).get("stage", 0)
    ds = m["deepspeed"]
    lines = [f"{p.label}  {p.digest[:12]}",
             (f"  {m['hardware']['name']}: {f['world_size']} device(s) of {_gib(p.device_memory)} GiB, "
              f"{estimate.precision(m)}, ZeRO {zero}, micro batch {ds['train_micro_batch_size_per_gpu']} x "
              f"accumulation {ds['gradient_accumulation_steps']} x {f['world_size']} = {ds['train_batch_size']} "
              "sequences"),
             "  memory per device (GiB)"]
    rows = [("parameters", mem.parameters, ""), ("gradients", mem.gradients, ""), ("optimizer", mem.optimizer, ""),
            ("activations", mem.activations,
             "activation checkpointing on" if mem.activation_checkpointing else "no activation checkpointing"),
            ("buffers", mem.buffers, ", ".join(f"{name} {_gib(v)}" for name, v in mem.buffer_parts)),
            ("fragmentation", mem.fragmentation, f"allowance: {estimate.FRAGMENTATION:.0%} of the above")]
    for name, value, note in rows:
        lines.append(f"    {name:<14}{_gib(value):>8}" + (f"   {note}" if note else ""))
    verdict = (f"fits {_gib(p.device_memory)} GiB ({mem.total / p.device_memory:.0%})" if p.fits
               else f"does NOT fit {_gib(p.device_memory)} GiB (needs {_gib(mem.total - p.device_memory)} more)")
    lines.append(f"    {'total':<14}{_gib(mem.total):>8}   {verdict}")
    if mem.host or mem.nvme:
        lines.append(f"  offloaded: {_gib(mem.host)} GiB host memory per process, {_gib(mem.host_per_node)} GiB per "
                     f"node ({m['hardware']['procs_per_node']} processes)" + (f"; {_gib(mem.nvme)} GiB on NVMe" if mem.nvme else ""))
    lines += [
        f"  parameters {_count(f['parameters'])}, trainable {_count(f['trainable_parameters'])}",
        (f"  tokens per step {_count(f['tokens_per_step'])}; FLOPs per token {_count(f['flops_per_token'])}, "
         f"per step {f['flops_per_step']:.3g}"),
        (f"  at {p.mfu.value:.0%} MFU ({p.mfu.source}) of {m['hardware']['peak_tflops']:g} TFLOP/s per device: "
         f"step {_seconds(f['step_seconds'])}, {_count(f['tokens_per_second'])} tokens/s, "
         f"{f['steps']} steps in {f['wall_hours']:.3g} h, {f['device_hours']:.3g} device-hours"),
    ]
    if not p.fits:
        if p.hints:
            lines.append("  these changes fit (each re-estimated; the global batch is kept):")
            lines += [_render_change(c, p) for c in p.hints]
        else:
            lines.append("  no single change fits (micro batch, ZeRO stage, activation checkpointing, offload, "
                         "up to 16x the devices, each re-estimated)")
    if p.asked_fit:
        if p.largest:
            lines.append("  largest micro batch that fits:")
            lines.append(_render_change(p.largest, p))
        else:
            lines.append("  largest micro batch that fits: none, not even 1")
    return "\n".join(lines) + "\n"


def _render_change(c: fit.Change, p: Plan) -> str:
    base = estimate.step_seconds(p.manifest, p.mfu.value)
    ratio = c.step_seconds / base
    cost = "step time unchanged" if abs(ratio - 1) < 0.005 else f"step time x{ratio:.2f} ({_seconds(c.step_seconds)})"
    note = f"; {c.note}" if c.note else ""
    host = f", {_gib(c.memory.host_per_node)} GiB of host memory per node" if c.memory.host else ""
    return f"    {c.summary}: {_gib(c.memory.total)} GiB per device{host}, {cost}{note}\n      {c.set_flags()}"


def _render_sweep(plans: list[Plan]) -> str:
    lines = [f"sweep: {len(plans)} runs",
             f"  {'member':<40}{'GiB/device':>11}{'fits':>6}{'step':>10}{'device-hours':>14}"]
    total = 0.0
    for p in plans:
        f = p.figures()
        total += f["device_hours"]
        lines.append(f"  {p.label[:40]:<40}{_gib(p.memory.total):>11}{'yes' if p.fits else 'NO':>6}"
                     f"{_seconds(f['step_seconds']):>10}{f['device_hours']:>14.3g}")
    lines.append(f"  {'total':<40}{'':>11}{sum(p.fits for p in plans):>6}{'':>10}{total:>14.3g}")
    return "\n".join(lines) + "\n"


def plan_json(plans: list[Plan]) -> dict:
    """Every figure with its unit: {"value": ..., "unit": ...} (memory_gib's are in GiB). One
    row per run under "runs"; a single run's figures are at the top level as well, so
    `expc plan DIGEST --json` reads directly (`["memory_gib"]["total"]`)."""
    runs = [_plan_json(p) for p in plans]
    out = {**runs[0], "runs": runs} if len(runs) == 1 else {"runs": runs}
    if len(plans) > 1:
        out["total"] = {"runs": len(plans), "fit": sum(p.fits for p in plans),
                        "device_hours": {"value": sum(r["device_hours"]["value"] for r in runs), "unit": "h"}}
    return out


def _memory_json(mem: estimate.MemoryEstimate) -> dict:
    return {name: {"value": round(getattr(mem, name), 6), "unit": "GiB"} for name in GIB_FIELDS}


def _plan_json(p: Plan) -> dict:
    f = p.figures()
    units = {"parameters": "parameters", "trainable_parameters": "parameters", "world_size": "devices",
             "tokens_per_step": "tokens", "flops_per_token": "FLOPs", "flops_per_step": "FLOPs",
             "step_seconds": "s", "tokens_per_second": "tokens/s", "steps": "steps", "wall_hours": "h",
             "device_hours": "h"}
    mem = p.memory
    out = {"label": p.label, "digest": p.digest, "fits": p.fits,
           "device_memory": {"value": p.device_memory, "unit": "GiB"},
           "memory_gib": {k: v["value"] for k, v in _memory_json(mem).items()},
           "buffers": [{"name": name, "value": round(v, 6), "unit": "GiB"} for name, v in mem.buffer_parts],
           "fragmentation_allowance": {"value": estimate.FRAGMENTATION, "unit": "fraction of allocated"},
           "activation_checkpointing": mem.activation_checkpointing,
           "host_per_process": {"value": round(mem.host, 6), "unit": "GiB"},
           "host_per_node": {"value": round(mem.host_per_node, 6), "unit": "GiB"},
           "nvme_per_process": {"value": round(mem.nvme, 6), "unit": "GiB"},
           "mfu": {"value": p.mfu.value, "unit": "fraction of peak", "source": p.mfu.source},
           **{k: {"value": v, "unit": units[k]} for k, v in f.items()},
           "hints": [_change_json(c) for c in p.hints]}
    if p.asked_fit:
        out["largest_micro_batch"] = _change_json(p.largest) if p.largest else None
    return out


def _change_json(c: fit.Change) -> dict:
    return {"change": c.summary, "set": c.set_items(),
            "memory_gib": {k: v["value"] for k, v in _memory_json(c.memory).items()},
            "host_per_node": {"value": round(c.memory.host_per_node, 6), "unit": "GiB"},
            "step_seconds": {"value": c.step_seconds, "unit": "s"}, "note": c.note}
