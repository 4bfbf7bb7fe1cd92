"""Rank agreement: this rank's manifest digest and environment -> either nothing, or every rank
stops together with a message naming the ranks and hosts that differ.

On several machines each node reads its own copy of the manifest and runs its own Python, torch,
DeepSpeed and checkout. A node with a stale manifest or another torch would still join the
collective and train something slightly different, silently. So before the first step every rank
all-gathers its fingerprint; each rank then compares the same list and reaches the same verdict,
so either all train or all stop (nobody is left waiting in a collective for a peer that quit).

Call `check_agreement(digest)` once the process group is up (after `deepspeed.init_distributed`;
on NCCL, after `torch.cuda.set_device`) and before building the model.
"""
from __future__ import annotations

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


def local_fingerprint(manifest_digest: str, rank: int) -> Fingerprint:
    import deepspeed
    import torch

    return Fingerprint(rank=rank, host=socket.gethostname(), manifest=manifest_digest,
                       python=platform.python_version(), torch=torch.__version__,
                       deepspeed=deepspeed.__version__, commit=source_commit())


def check_agreement(manifest_digest: str) -> list[Fingerprint]:
    """All-gather every rank's fingerprint; return them (rank order) when all agree, else raise
    the same ExpcError on every rank. Needs an initialized torch.distributed process group."""
    import torch.distributed as dist

    mine = local_fingerprint(manifest_digest, dist.get_rank())
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, asdict(mine))
    prints = [Fingerprint(**g) for g in gathered]
    message = disagreement(prints)
    if message:
        raise ExpcError(message)
    return prints


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
