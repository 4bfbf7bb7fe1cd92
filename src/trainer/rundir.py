"""The run directory: runs/<digest>/ -> what a run leaves behind, and what a resumed run reads.

    manifest.json     the manifest, byte for byte
    ds_config.json    its `deepspeed` section, exactly as passed to deepspeed.initialize
    metadata.json     the git commit and dirty flag of the project holding the manifest, hosts,
                      versions (expc's among them), start/end, duration, status
    metrics.jsonl     one JSON object per logged step (and per evaluation)
    checkpoints/      DeepSpeed checkpoints (the last `keep_checkpoints`), with RNG states per rank;
                      `step_<N>.partial/` while one is written, renamed to `step_<N>/` when whole
    logs/             one log per rank (written by the launcher)
    sample.txt        text sampled from the trained model (text corpora)
    wandb/            the W&B run (offline unless an API key is configured)

Only rank 0 writes the shared files; each rank writes its own RNG state. Writes are atomic
(temp file + rename) so a killed run never leaves half a metadata.json. `expc run` reads this
module too (which checkpoint is complete), so torch is imported only where tensors are handled.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from expc.compile.write import write_atomic  # one writer: a whole file or none, the real name in errors

STATUSES = ("running", "completed", "failed", "preempted")
TAG = re.compile(r"^step_(\d+)$")
PARTIAL = ".partial"  # a checkpoint being written; never read


def read_metadata(run_dir: Path) -> dict:
    path = Path(run_dir) / "metadata.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def update_metadata(run_dir: Path, **fields) -> dict:
    meta = read_metadata(run_dir)
    meta.update(fields)
    write_atomic(Path(run_dir) / "metadata.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def project_git(root: Path, runs: Path | None = None, listed: int = 20) -> dict:
    """The git state of the project that holds the manifest (its specs' repository, not the
    checkout expc is installed from): {"commit": HEAD or None outside a repository, "dirty":
    whether any file under the project root differs from HEAD, untracked files included (a new
    spec, a manifest not yet committed), "changed": the first `listed` of them, as git names
    them}. The runs folder is left out: the run's own files are no change to the project.
    """
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                              check=False)

    try:
        head = git("rev-parse", "--verify", "--quiet", "HEAD")
        inside = git("rev-parse", "--is-inside-work-tree")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": False, "changed": []}
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return {"commit": None, "dirty": False, "changed": []}
    pathspec = ["--", "."]
    if runs is not None:
        try:
            pathspec.append(f":(exclude){Path(runs).resolve().relative_to(Path(root).resolve())}")
        except ValueError:
            pass  # the runs folder lives outside the project (--runs-dir)
    status = git("status", "--porcelain", "--untracked-files=all", *pathspec)
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    commit = head.stdout.strip() if head.returncode == 0 else None  # None: a repository without commits
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:listed]}


def expc_version() -> str:
    """The installed expc distribution's version ("unknown" when expc is run from a source tree
    that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("expc")
    except PackageNotFoundError:
        return "unknown"


class Metrics:
    """metrics.jsonl: appended line by line and flushed, so `expc run` can follow it live."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        if resume_step and path.is_file():
            # Lines after the checkpoint came from steps that are about to be trained again.
            kept = [line for line in path.read_text().splitlines()
                    if line and json.loads(line).get("step", 0) <= resume_step]
            write_atomic(path, "".join(line + "\n" for line in kept))
        elif path.exists():
            path.unlink()
        self.file = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as err:  # a full disk: say which file
            raise OSError(err.errno, err.strerror, str(self.path)) from None

    def close(self) -> None:
        self.file.close()


def checkpoint_tags(checkpoints: Path) -> list[str]:
    """Complete checkpoints, oldest first. A tag is complete once rank 0 wrote its `complete`
    marker, after every rank saved; a tag without it is a save that was cut short."""
    if not checkpoints.is_dir():
        return []
    tags = [p.name for p in checkpoints.iterdir() if p.is_dir() and TAG.match(p.name)]
    return sorted((t for t in tags if (checkpoints / t / "complete").exists()), key=lambda t: int(TAG.match(t)[1]))


def latest_step(checkpoints: Path) -> int:
    tags = checkpoint_tags(checkpoints)
    return int(TAG.match(tags[-1])[1]) if tags else 0


def rng_state() -> dict:
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(engine, checkpoints: Path, step: int, rank: int, client_state: dict, keep: int,
                    frozen_base: bool = False) -> None:
    """Every rank calls this together. DeepSpeed saves model, optimizer, scheduler and its step;
    RNG states are ours (dropout must continue the same stream). The checkpoint is written to
    `step_<N>.partial/`; once every rank is done, rank 0 flushes it to disk, marks it `complete`,
    renames it to `step_<N>/` and only then points `latest` at it. A kill -9 (or a full disk)
    at any moment leaves the previous checkpoint as the newest one a resume trusts.
    With a frozen base (an adapter) only the trained weights are saved: the base is its pinned
    files, and a checkpoint of a 1.5B base would otherwise be gigabytes."""
    import torch
    import torch.distributed as dist

    from expc.errors import ExpcError

    tag = f"step_{step:08d}"
    partial = checkpoints / f"{tag}{PARTIAL}"
    if rank == 0:  # what a save cut short left behind (one `expc run` per digest holds the lock)
        for stale in checkpoints.glob(f"*{PARTIAL}"):
            shutil.rmtree(stale, ignore_errors=True)
    dist.barrier()
    try:
        # save_latest=False: DeepSpeed would point `latest` at the tag before the other ranks finish
        engine.save_checkpoint(str(checkpoints), tag=partial.name, client_state=client_state, save_latest=False,
                               exclude_frozen_parameters=frozen_base)
        torch.save(rng_state(), partial / f"rng_rank{rank:05d}.pt")
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as a RuntimeError
        shutil.rmtree(partial, ignore_errors=True)  # frees the space, so the failure can be recorded
        raise ExpcError(f"could not save the checkpoint of step {step} to {partial}{free_space_note(checkpoints)}: "
                        f"{err}; the checkpoints saved before it are kept") from None
    dist.barrier()
    if rank == 0:
        (partial / "complete").write_text(f"{step}\n")
        sync_tree(partial)
        os.replace(partial, checkpoints / tag)
        write_atomic(checkpoints / "latest", tag)  # DeepSpeed's pointer, for its own tools (zero_to_fp32)
        sync_tree(checkpoints, files=False)
        for old in checkpoint_tags(checkpoints)[:-keep]:
            shutil.rmtree(checkpoints / old, ignore_errors=True)
    dist.barrier()


def sync_tree(folder: Path, files: bool = True) -> None:
    """fsync every file under `folder` (when `files`), then the folders themselves, so a
    rename that follows cannot reach the disk before the data it names."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames if files else ():
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not files:
            break


def free_space_note(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f" ({free / 2**20:.1f} MiB free on that file system)"


def load_checkpoint(engine, checkpoints: Path, rank: int, frozen_base: bool = False) -> dict:
    """Load the newest complete checkpoint; return its client state ({} when there is none)."""
    import torch

    tags = checkpoint_tags(checkpoints)
    if not tags:
        return {}
    # a checkpoint without the frozen base loads its trained weights over the freshly loaded base
    _, client_state = engine.load_checkpoint(str(checkpoints), tag=tags[-1], load_module_strict=not frozen_base)
    restore_rng_state(torch.load(checkpoints / tags[-1] / f"rng_rank{rank:05d}.pt", weights_only=False))
    return client_state or {}
