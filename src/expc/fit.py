"""Changes that make a run fit its devices, each one applied to a copy of the manifest and
re-estimated (expc.estimate), so that a hint is only offered when it is true.

Input: a manifest as a plain dict. Output: `Change`s (what to set, the memory per device and the
step time it gives) for the build-time fit check and `expc plan`; `largest_micro_batch` for
`expc plan --fit`. Each change keeps the global batch (train_batch_size): fewer sequences per
micro batch are made up by more accumulation steps, more devices by fewer. Plain arithmetic; no
torch. How step time is costed: docs/plan.md ("Hints").
"""
from __future__ import annotations

import copy
import json
import shlex
from dataclasses import dataclass, field

from . import estimate
from .archs import arch_of

# Bandwidth assumed between a device and host memory when offloading (PCIe 4.0 x16 in practice);
# the hardware profiles do not state it.
HOST_LINK_GB_PER_S = 25.0


@dataclass(frozen=True)
class Change:
    """One change to a manifest and what the estimate says it gives."""

    summary: str  # e.g. "micro batch 2 x accumulation 8"
    settings: tuple[tuple[str, object], ...]  # (dotted path, new value), as `--set` takes them
    memory: estimate.MemoryEstimate
    step_seconds: float
    note: str = ""  # what the step time leaves out
    manifest: dict = field(default=None, repr=False, compare=False)
    new_paths: frozenset = frozenset()  # settings the original manifest lacks: `--set +path=...`

    def set_flags(self) -> str:
        return " ".join(f"--set {shlex.quote(item)}" for item in self.set_items())

    def set_items(self) -> list[str]:
        """`path=value` for each setting, the value as JSON (what `--set` parses)."""
        return [f"{'+' if path in self.new_paths else ''}{path}={json.dumps(value, separators=(',', ':'))}"
                for path, value in self.settings]


def utilisation(manifest: dict, mfu: float) -> float:
    """Device FLOPs per peak FLOP for a run of this manifest at this MFU: the MFU counts model
    FLOPs only, so a run that recomputes its activations does more work at the same MFU."""
    return mfu * estimate.recompute_factor(manifest)


def step_seconds(manifest: dict, device_utilisation: float) -> float:
    """Step time of a (changed) manifest when the devices run at the same utilisation."""
    return estimate.step_seconds(manifest, min(1.0, device_utilisation / estimate.recompute_factor(manifest)))


def _apply(manifest: dict, settings: list[tuple[str, object]]) -> dict:
    changed = copy.deepcopy(manifest)
    for path, value in settings:
        node = changed
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return changed


def _change(manifest: dict, summary: str, settings: list, device_utilisation: float, note: str = "",
            extra_seconds: float = 0.0) -> Change:
    changed = _apply(manifest, settings)
    return Change(summary, tuple(settings), estimate.memory_per_device(changed),
                  step_seconds(changed, device_utilisation) + extra_seconds, note, changed,
                  frozenset(path for path, _ in settings if not has_path(manifest, path)))


def has_path(manifest: dict, path: str) -> bool:
    """Whether the dotted `path` ("deepspeed.zero_optimization.stage") is in the manifest."""
    node = manifest
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _batch(ds: dict) -> tuple[int, int]:
    return ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]


def micro_batch_changes(manifest: dict, device_utilisation: float) -> list[Change]:
    """Every micro batch that divides the sequences one device trains per step, with the
    accumulation that keeps the global batch, smallest first."""
    micro, accumulation = _batch(manifest["deepspeed"])
    per_device = micro * accumulation
    return [_change(manifest, f"micro batch {m} x accumulation {per_device // m}",
                    [("deepspeed.train_micro_batch_size_per_gpu", m),
                     ("deepspeed.gradient_accumulation_steps", per_device // m)], device_utilisation,
                    "smaller micro batches often run at a lower MFU than the one assumed" if m < micro else "")
            for m in range(1, per_device + 1) if per_device % m == 0]


def largest_micro_batch(manifest: dict, device_utilisation: float) -> Change | None:
    """The largest micro batch that fits, the global batch kept through accumulation; None when
    not even a micro batch of 1 fits."""
    fitting = [c for c in micro_batch_changes(manifest, device_utilisation) if _fits(c, manifest)]
    return fitting[-1] if fitting else None


def _fits(change: Change, manifest: dict) -> bool:
    return change.memory.total <= manifest["hardware"]["device_memory_gib"]


def fitting_changes(manifest: dict, device_utilisation: float | None = None) -> list[Change]:
    """The single changes that make the run fit, each re-estimated: a smaller micro batch, a
    higher ZeRO stage, activation checkpointing, offload, more devices. For each kind the least
    drastic one that fits; ordered by step time."""
    if device_utilisation is None:
        device_utilisation = utilisation(manifest, estimate.DEFAULT_MFU)
    ds = manifest["deepspeed"]
    zero = ds.get("zero_optimization") or {}
    stage = zero.get("stage", 0)
    micro = ds["train_micro_batch_size_per_gpu"]
    found: list[Change] = []

    def first_fitting(candidates) -> None:
        for candidate in candidates:
            change = candidate()
            if _fits(change, manifest):
                found.append(change)
                return

    first_fitting([lambda c=c: c for c in reversed(micro_batch_changes(manifest, device_utilisation))
                   if c.settings[0][1] < micro])

    first_fitting([lambda s=s: _change(manifest, f"ZeRO stage {s}", [("deepspeed.zero_optimization.stage", s)],
                                       device_utilisation,
                                       "stage 3 moves 1.5x the data of stages 0-2 per step (ZeRO paper, section 7)"
                                       if s == 3 else "")
                   for s in range(stage + 1, 4)])

    arch = arch_of(manifest["model"])
    if arch.checkpointing_field and not arch.checkpointing(manifest["model"]):
        first_fitting([lambda: _change(manifest, "activation checkpointing",
                                       [(f"model.{arch.checkpointing_field}", True)], device_utilisation)])

    if stage >= 1:
        cpu = {"device": "cpu", "pin_memory": True}
        optimizer = ([] if estimate.offloaded(zero, "offload_optimizer")
                     else [("deepspeed.zero_optimization.offload_optimizer", cpu)])
        offloads = [optimizer] if optimizer else []
        if stage == 3 and not estimate.offloaded(zero, "offload_param"):
            offloads.append([*optimizer, ("deepspeed.zero_optimization.offload_param", cpu)])
        first_fitting([lambda o=o: _offload_change(manifest, o, device_utilisation) for o in offloads])

    first_fitting([lambda k=k: _more_devices(manifest, k, device_utilisation)
                   for k in (2, 4, 8, 16) if _more_devices_possible(manifest, k)])
    return sorted(found, key=lambda c: c.step_seconds)


def _offload_change(manifest: dict, settings: list, device_utilisation: float) -> Change:
    """Offload, with the transfers it adds: each step the gradients of a device's partition go to
    the host and the updated weights come back (and with offload_param the weights go both ways
    again for the backward pass), at HOST_LINK_GB_PER_S."""
    trainable = estimate.trainable_parameters(manifest)
    world = estimate.world_size(manifest)
    element = 4 if estimate.precision(manifest) == "fp32" else 2
    moved = 2 * trainable * element / world
    if any(path.endswith("offload_param") for path, _ in settings):
        moved += 2 * estimate.parameter_count(manifest["model"]) * element / world
    what = " and ".join(path.rsplit(".", 1)[1].replace("_", " ") for path, _ in settings)
    return _change(manifest, what, settings, device_utilisation,
                   f"includes {moved / 1e9:.2g} GB of host transfers per step at {HOST_LINK_GB_PER_S:g} GB/s; "
                   "the optimizer step on the CPU is not costed", extra_seconds=moved / (HOST_LINK_GB_PER_S * 1e9))


def _more_devices_possible(manifest: dict, k: int) -> bool:
    """k times the nodes keeps the global batch and the micro batch when the accumulation divides
    by k; a CPU profile is one machine's processes, not a device to add."""
    return manifest["hardware"]["accelerator"] != "cpu" and manifest["deepspeed"]["gradient_accumulation_steps"] % k == 0


def _more_devices(manifest: dict, k: int, device_utilisation: float) -> Change:
    """k times the nodes, the global batch kept by dividing the accumulation by k."""
    accumulation = manifest["deepspeed"]["gradient_accumulation_steps"]
    nodes = manifest["hardware"]["nodes"] * k
    procs = manifest["hardware"]["procs_per_node"]
    return _change(manifest, f"{nodes} nodes ({nodes * procs} devices), accumulation {accumulation // k}",
                   [("hardware.nodes", nodes), ("deepspeed.gradient_accumulation_steps", accumulation // k)],
                   device_utilisation, "more devices communicate more per step")
