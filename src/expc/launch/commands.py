"""The single-node launch plan: a manifest and the operator's options -> the exact `deepspeed`
command, the environment it adds, and the run directory. A pure function: nothing is read from
the machine here (the caller passes what it found), so `--dry-run` prints exactly what `expc run`
executes, and tests compare plans as text.

    deepspeed --num_gpus 2 --master_port 29500 --enable_each_rank_log runs/<digest>/logs \
        --module trainer manifests/<digest>.json --run-dir runs/<digest>

`--num_gpus` is DeepSpeed's name for processes per node, also on CPU. Each rank's stdout and
stderr go to runs/<digest>/logs/<time>_rank<N>.log. The environment pins threads
(OMP_NUM_THREADS from `launch.threads_per_process`), names the accelerator (DS_ACCELERATOR),
logs W&B offline when no API key is configured, and adds the manifest's `launch.env` last.
Multi-node launches (pdsh, ssh-less, MPI, Slurm) are planned in multinode.py from the same Job.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .deepspeed_env import rank_environment
from .multinode import DEFAULT_MASTER_PORT, Job, MultinodePlan, Placement, plan_placement


@dataclass(frozen=True)
class LaunchOptions:
    manifest_path: Path  # absolute
    run_dir: Path  # absolute
    bin_dir: Path  # the folder holding the `deepspeed` executable (and python) to use
    master_port: int = DEFAULT_MASTER_PORT
    wandb_key: bool = False  # whether a W&B API key is configured on this machine
    operator_env: dict[str, str] = field(default_factory=dict)  # W&B and socket settings pass through
    # GPUs of this machine to use (the executor gives concurrent members disjoint ones); None:
    # the first procs_per_node. DeepSpeed's launcher ignores CUDA_VISIBLE_DEVICES once it is told
    # a process count, so devices are named with --include, which sets it for every rank.
    devices: tuple[int, ...] | None = None


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    env: dict[str, str]  # added to the operator's environment
    run_dir: Path
    world_size: int

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    def describe(self) -> str:
        """The --dry-run text: one shell line that runs the same launch."""
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        return " ".join(assignments + [shlex.join(self.argv)]) + "\n"


def plan_launch(manifest: dict, options: LaunchOptions) -> LaunchPlan:
    hardware = manifest["hardware"]
    job = launch_job(manifest, options)
    if options.devices is not None:
        if len(options.devices) != job.procs_per_node:
            raise ValueError(f"{len(options.devices)} devices for {job.procs_per_node} processes")
        where = ["--include", "localhost:" + ",".join(map(str, options.devices))]
    else:
        where = ["--num_gpus", str(job.procs_per_node)]
    argv = [job.deepspeed, *where, "--master_port", str(job.master_port),
            "--enable_each_rank_log", str(job.logs)] + job.trainer_argv
    return LaunchPlan(argv, job.env, options.run_dir, hardware["nodes"] * hardware["procs_per_node"])


def launch_job(manifest: dict, options: LaunchOptions) -> Job:
    """What every launcher shares: paths, executables, and every rank's environment."""
    extra = {}
    wandb = manifest["logging"]["wandb"]
    if wandb["mode"] == "online" and not options.wandb_key and "WANDB_MODE" not in options.operator_env:
        extra["WANDB_MODE"] = "offline"  # no account: log under the run dir, `wandb sync` later
    env = rank_environment(manifest, extra, options.operator_env)
    return Job(manifest, options.manifest_path, options.run_dir, options.bin_dir, env, options.master_port)


def plan_multinode_launch(manifest: dict, digest: str, options: LaunchOptions,
                          placement: Placement) -> MultinodePlan:
    """A multi-node launch (pdsh, ssh-less, OpenMPI, Slurm): see multinode.py."""
    return plan_placement(launch_job(manifest, options), digest, placement)
