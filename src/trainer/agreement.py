"""Rank agreement: this rank's manifest digest and environment -> either nothing, or every rank
stops together with a message naming the ranks and hosts that differ.

On several machines each node reads its own copy of the manifest and runs its own Python, torch,
DeepSpeed and checkout. A node with a stale manifest or another torch would still join the
collective and train something slightly different, silently. So before the first step every rank
all-gathers its fingerprint; each rank then compares the same list and reaches the same verdict,
so either all train or all stop (nobody is left waiting in a collective for a peer that quit).

On a GPU manifest each rank also reports how many CUDA devices it sees and how many processes
its host runs: a host with fewer devices than processes (a GPU fallen off the bus, a hostfile
with too many slots) is named, and again every rank stops together.

Call `check_agreement(digest, hardware)` once the process group is up (after
`deepspeed.init_distributed`; on NCCL, after `torch.cuda.set_device`) and before building the model.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from expc.errors import ExpcError

# The fields compared, in the order a message lists them, with the words used for each.
FIELDS = {"manifest": "manifest digest", "python": "python", "torch": "torch",
          "deepspeed": "deepspeed", "commit": "git commit"}


@dataclass(frozen=True)
class Fingerprint:
    rank: int
    host: str
    manifest: str  # full digest; shown as 12 characters
    python: str
    torch: str
    deepspeed: str
    commit: str  # "<40 hex>", "<40 hex>+dirty:<12 hex of the diff>", or "none" outside a checkout
    devices: int | None = None  # CUDA devices this rank sees; None on a CPU manifest
    local_procs: int | None = None  # processes its host runs (each needs a device); None on CPU


def source_commit(folder: Path | None = None) -> str:
    """The git commit of the checkout holding the trainer code, with a digest of any uncommitted
    change to tracked files (two differently edited checkouts must not look alike)."""
    import hashlib

    folder = folder or Path(__file__).resolve().parent
    def git(*args):
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "none"
        commit = head.stdout.decode().strip()
        diff = git("diff", "HEAD").stdout
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    if diff:
        return f"{commit}+dirty:{hashlib.sha256(diff).hexdigest()[:12]}"
    return commit


def local_processes(procs_per_node: int | None, environ=None) -> int | None:
    """Processes started on this host: the launcher's count (LOCAL_WORLD_SIZE from torchrun,
    LOCAL_SIZE from DeepSpeed's launcher and from ranks.py under mpirun), else the manifest's."""
    environ = os.environ if environ is None else environ
    for name in ("LOCAL_WORLD_SIZE", "LOCAL_SIZE"):
        if environ.get(name, "").isdigit():
            return int(environ[name])
    return procs_per_node


def local_fingerprint(manifest_digest: str, rank: int, gpu: bool = False,
                      procs_per_node: int | None = None) -> Fingerprint:
    import deepspeed
    import torch

    devices = torch.cuda.device_count() if gpu else None
    return Fingerprint(rank=rank, host=socket.gethostname(), manifest=manifest_digest,
                       python=platform.python_version(), torch=torch.__version__,
                       deepspeed=deepspeed.__version__, commit=source_commit(), devices=devices,
                       local_procs=local_processes(procs_per_node) if gpu else None)


def check_agreement(manifest_digest: str, hardware: dict) -> list[Fingerprint]:
    """All-gather every rank's fingerprint; return them (rank order) when all agree and every
    host has its devices, else raise the same ExpcError on every rank. Needs an initialized
    torch.distributed process group. `hardware` is the manifest's section."""
    import torch.distributed as dist

    mine = local_fingerprint(manifest_digest, dist.get_rank(), hardware["accelerator"] == "cuda",
                             hardware["procs_per_node"])
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, asdict(mine))
    prints = [Fingerprint(**g) for g in gathered]
    message = verdict(prints)
    if message:
        raise ExpcError(message)
    return prints


def verdict(prints: list[Fingerprint]) -> str | None:
    """Every reason the ranks cannot train together (disagreement, then missing devices), or None."""
    found = [m for m in (disagreement(prints), device_shortage(prints)) if m]
    return "\n".join(found) or None


def device_shortage(prints: list[Fingerprint]) -> str | None:
    """The message for hosts that run more processes than they have CUDA devices, or None.

        too few devices, so none of the ranks will train:
          host gpu-b: 7 CUDA devices for 8 processes (ranks 8-15)
    """
    by_host: dict[str, list[Fingerprint]] = {}
    for p in prints:
        if p.devices is not None and p.local_procs is not None:
            by_host.setdefault(p.host, []).append(p)
    lines = []
    for host, members in by_host.items():
        devices, procs = min(m.devices for m in members), max(m.local_procs for m in members)
        if devices < procs:
            ranks = [m.rank for m in members]
            lines.append(f"  host {host}: {devices} CUDA device{'s' if devices != 1 else ''} for {procs} "
                         f"process{'es' if procs != 1 else ''} "
                         f"({'rank' if len(ranks) == 1 else 'ranks'} {span(ranks)})")
    if not lines:
        return None
    return "too few devices, so none of the ranks will train:\n" + "\n".join(lines)


def disagreement(prints: list[Fingerprint]) -> str | None:
    """The message for fingerprints that differ, or None when every field agrees.

        ranks disagree, so none of them will train:
          manifest digest: 1e69703c1a0b on rank 0 (host a); 5d0b7f2e9a11 on rank 1 (host b)
    """
    lines = []
    for field, words in FIELDS.items():
        groups: dict[str, list[Fingerprint]] = {}
        for p in prints:
            groups.setdefault(getattr(p, field), []).append(p)
        if len(groups) < 2:
            continue
        # The majority value first, so the odd ones out read last.
        ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[1][0].rank))
        parts = [f"{shown(field, value)} on {who(members)}" for value, members in ordered]
        lines.append(f"  {words}: " + "; ".join(parts))
    if not lines:
        return None
    return "ranks disagree, so none of them will train:\n" + "\n".join(lines)


def shown(field: str, value: str) -> str:
    if field == "manifest":
        return value[:12]
    if field == "commit" and value != "none":
        head, _, dirty = value.partition("+")
        return head[:12] + (f"+{dirty}" if dirty else "")
    return value


def who(members: list[Fingerprint]) -> str:
    ranks = [m.rank for m in members]
    hosts = list(dict.fromkeys(m.host for m in members))
    rank_words = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {span(ranks)}"
    host_words = ("host " if len(hosts) == 1 else "hosts ") + ", ".join(hosts)
    return f"{rank_words} ({host_words})"


def span(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
