"""Multi-node launch plans: a manifest, its run folder and the operator's choice of launcher ->
the exact commands, files and environment of the launch.

Four ways to start the same job; the manifest (and so the digest) never changes between them:

  pdsh     one `deepspeed --hostfile` command here; DeepSpeed's launcher reaches every host over
           ssh with pdsh. The default with `--hostfile`.
  no-ssh   one command per node, run by the operator on each node (`--node-rank R --master-addr H`):
           `deepspeed --no_ssh --node_rank R`. For clusters without ssh between nodes.
  mpi      one `deepspeed --launcher openmpi` command here; mpirun starts every rank, and the
           trainer takes its rank from OpenMPI's variables (no mpi4py needed).
  slurm    an sbatch script whose one `srun` step runs the no-ssh per-node command on every node
           of the allocation, with the node rank from `$SLURM_NODEID`.

Everything a plan writes goes into the run folder, so the launch can be read (and repeated) later:
`hostfile` (normalised: each host with exactly `procs_per_node` slots), `.deepspeed_env` (the
variables pdsh and mpirun would otherwise drop, found through `DS_ENV_FILE`), `slurm.sbatch`,
and `launch-plan.json` (written by the caller from `as_json`).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from expc.errors import ExpcError

from .deepspeed_env import deepspeed_env_text
from .hosts import Host

LAUNCHERS = ("pdsh", "no-ssh", "mpi", "slurm")
DEFAULT_MASTER_PORT = 29500
# How long a rank waits for its peers at the rendezvous (torch's default: 30 minutes). A launch
# detail, so it comes from `expc run --dist-timeout` and travels in the plan, not the manifest.
DIST_TIMEOUT = "EXPC_DIST_TIMEOUT_S"


@dataclass(frozen=True)
class Job:
    """What every launcher needs: where things are, and how the trainer is started."""

    manifest: dict
    manifest_path: Path  # absolute: remote nodes resolve it on their own (shared) file system
    run_dir: Path  # absolute, for the same reason
    bin_dir: Path  # the folder of the python, deepspeed and expc executables, the same on every node
    env: dict[str, str]  # every rank's variables (see deepspeed_env.rank_environment)
    master_port: int = DEFAULT_MASTER_PORT

    @property
    def nodes(self) -> int:
        return self.manifest["hardware"]["nodes"]

    @property
    def procs_per_node(self) -> int:
        return self.manifest["hardware"]["procs_per_node"]

    @property
    def deepspeed(self) -> str:
        return str(self.bin_dir / "deepspeed")

    @property
    def trainer_argv(self) -> list[str]:
        """The user script part of a deepspeed command: the trainer module and its two inputs."""
        return ["--module", "trainer", str(self.manifest_path), "--run-dir", str(self.run_dir)]

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"


@dataclass
class MultinodePlan:
    launcher: str
    commands: list[list[str]]  # run here, in order (for slurm: the sbatch submission)
    env: dict[str, str]  # added to the environment of the commands run here
    files: dict[str, str] = field(default_factory=dict)  # run-folder name -> text
    notes: list[str] = field(default_factory=list)  # what the operator must do elsewhere

    def describe(self) -> str:
        """The --dry-run text: environment, commands, then each file written, in full."""
        lines = [f"# launcher: {self.launcher}"]
        lines += [f"# {note}" for note in self.notes]
        for command in self.commands:
            assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
            lines.append(" ".join(assignments + [shlex.join(command)]))
        for name, text in self.files.items():
            lines.append(f"# --- {name} ---")
            lines.append(text.rstrip("\n"))
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict:
        return {"launcher": self.launcher, "commands": self.commands, "env": self.env,
                "files": sorted(self.files), "notes": self.notes}


def hostfile_text(hosts: list[Host] | tuple[Host, ...], procs_per_node: int) -> str:
    return "".join(f"{host.name} slots={procs_per_node}\n" for host in hosts)


def pdsh_plan(job: Job, hosts, master_addr: str | None = None, launcher_args: str = "") -> MultinodePlan:
    """One deepspeed command reaching every host over ssh with pdsh."""
    master = master_addr or hosts[0].name
    command = [job.deepspeed, "--hostfile", str(job.run_dir / "hostfile"),
               "--num_nodes", str(job.nodes), "--num_gpus", str(job.procs_per_node),
               "--master_addr", master, "--master_port", str(job.master_port),
               "--enable_each_rank_log", str(job.logs)]
    if len(hosts) == 1:
        command.append("--force_multi")  # else DeepSpeed runs a one-host hostfile here, not there
    if launcher_args:
        command += ["--launcher_args", launcher_args]
    return MultinodePlan(
        "pdsh", [command + job.trainer_argv], {"DS_ENV_FILE": str(job.run_dir / ".deepspeed_env")},
        {"hostfile": hostfile_text(hosts, job.procs_per_node), ".deepspeed_env": deepspeed_env_text(job.env)},
        [f"every host must reach {master}:{job.master_port} and see {job.run_dir} and {job.bin_dir}"])


def no_ssh_plan(job: Job, node_rank: int, master_addr: str, hosts=None) -> MultinodePlan:
    """This node's share of an ssh-less launch; the operator runs the same expc command on each
    node with its own --node-rank. DeepSpeed needs a hostfile only to size the world: without the
    operator's, the nodes are named node-0, node-1, ..."""
    hosts = hosts or [Host(f"node-{n}", job.procs_per_node, 0) for n in range(job.nodes)]
    command = [job.deepspeed, "--no_ssh", "--hostfile", str(job.run_dir / "hostfile"),
               "--num_nodes", str(job.nodes), "--num_gpus", str(job.procs_per_node),
               "--node_rank", str(node_rank), "--master_addr", master_addr,
               "--master_port", str(job.master_port), "--enable_each_rank_log", str(job.logs)]
    return MultinodePlan(
        "no-ssh", [command + job.trainer_argv], dict(job.env),
        {"hostfile": hostfile_text(hosts, job.procs_per_node)},
        [f"node {node_rank} of {job.nodes}: run the same expc command on every node with its own "
         f"--node-rank, all with --master-addr {master_addr}"])


def mpi_plan(job: Job, hosts, master_addr: str | None = None, launcher_args: str = "") -> MultinodePlan:
    """DeepSpeed's OpenMPI launcher: mpirun starts every rank from the (normalised) hostfile; the
    rendezvous address travels in .deepspeed_env, which DeepSpeed passes to mpirun as -x."""
    master = master_addr or hosts[0].name
    env = {**job.env, "MASTER_ADDR": master, "MASTER_PORT": str(job.master_port)}
    command = [job.deepspeed, "--launcher", "openmpi", "--hostfile", str(job.run_dir / "hostfile"),
               "--master_addr", master, "--master_port", str(job.master_port)]
    if launcher_args:
        command += ["--launcher_args", launcher_args]
    return MultinodePlan(
        "mpi", [command + job.trainer_argv], {"DS_ENV_FILE": str(job.run_dir / ".deepspeed_env")},
        {"hostfile": hostfile_text(hosts, job.procs_per_node), ".deepspeed_env": deepspeed_env_text(env)},
        ["DeepSpeed adds `--mca btl_tcp_if_include eth0` unless --launcher-args names another "
         "btl_tcp_if_include; the trainer reads OpenMPI's rank variables"])


# Shell lines of an sbatch script: the first node of the allocation is the master, at its NodeAddr.
MASTER_ADDR_LINES = [
    "# The first node of the allocation hosts the rendezvous, at the address Slurm uses for it.",
    'master=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
    'MASTER_ADDR=$(scontrol show node "$master" | sed -n \'s/.*NodeAddr=\\([^ ]*\\).*/\\1/p\')',
    'export MASTER_ADDR="${MASTER_ADDR:-$master}"',
]


def slurm_script(job: Job, digest: str, partition: str | None = None, time_limit: str | None = None,
                 dist_timeout_s: int | None = None) -> str:
    """An sbatch script: one task per node, each running the ssh-less expc command for its node."""
    gpus = job.manifest["hardware"]["accelerator"] == "cuda"
    threads = job.manifest["launch"]["threads_per_process"]
    lines = ["#!/bin/bash",
             f"# expc run {digest[:12]} on {job.nodes} nodes x {job.procs_per_node} "
             f"process{'es' if job.procs_per_node != 1 else ''}, through Slurm.",
             f"# Submit with: sbatch {job.run_dir / 'slurm.sbatch'}",
             f"#SBATCH --job-name=expc-{digest[:12]}",
             f"#SBATCH --nodes={job.nodes}",
             "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --cpus-per-task={job.procs_per_node * threads}"]
    if gpus:
        lines.append(f"#SBATCH --gpus-per-node={job.procs_per_node}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if time_limit:
        lines.append(f"#SBATCH --time={time_limit}")
    lines += [f"#SBATCH --output={job.logs / 'slurm-%j.out'}",
              "set -euo pipefail",
              *MASTER_ADDR_LINES,
              "# One task per node; each starts that node's ranks without ssh. The single quotes keep",
              "# $SLURM_NODEID for the task to expand: it is the node's rank in the allocation.",
              f"srun --nodes={job.nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c "
              + shlex.quote(
                  f"exec {shlex.quote(str(job.bin_dir / 'expc'))} run {shlex.quote(str(job.manifest_path))} "
                  f'--node-rank "$SLURM_NODEID" --master-addr "$MASTER_ADDR" '
                  f"--master-port {job.master_port}"
                  + (f" --dist-timeout {dist_timeout_s}" if dist_timeout_s is not None else "")),
              ""]
    return "\n".join(lines)


def slurm_plan(job: Job, digest: str, partition: str | None = None, time_limit: str | None = None,
               dist_timeout_s: int | None = None) -> MultinodePlan:
    script = job.run_dir / "slurm.sbatch"
    return MultinodePlan(
        "slurm", [["sbatch", str(script)]], {},
        {"slurm.sbatch": slurm_script(job, digest, partition, time_limit, dist_timeout_s)},
        ["the allocation's nodes must see the run folder and the same expc install"])


@dataclass(frozen=True)
class Placement:
    """Where the operator asked the job to run: `expc run`'s multi-node options."""

    hostfile: Path | None = None
    node_rank: int | None = None
    master_addr: str | None = None
    launcher: str | None = None  # None: pdsh with a hostfile, no-ssh with a node rank
    launcher_args: str = ""
    partition: str | None = None  # Slurm only
    time_limit: str | None = None  # Slurm only
    dist_timeout_s: int | None = None  # seconds every rank waits for its peers (DIST_TIMEOUT)

    @property
    def given(self) -> bool:
        return (self.hostfile is not None or self.node_rank is not None or self.launcher is not None
                or self.master_addr is not None or self.dist_timeout_s is not None)


def plan_placement(job: Job, digest: str, placement: Placement) -> MultinodePlan:
    """The plan for the operator's options, after checking them against the manifest's shape."""
    from .hosts import check_hostfile, check_node_rank, read_hostfile

    hardware = job.manifest["hardware"]
    launcher = placement.launcher or ("no-ssh" if placement.node_rank is not None else "pdsh")
    if launcher not in LAUNCHERS:
        raise ExpcError(f'unknown launcher "{launcher}"; choose one of {", ".join(LAUNCHERS)}')
    if placement.dist_timeout_s is not None:
        only_timeout = placement == Placement(dist_timeout_s=placement.dist_timeout_s)
        if hardware["nodes"] == 1 and only_timeout:
            raise ExpcError("--dist-timeout is for launches over several nodes; this manifest is planned "
                            "for 1 node, whose ranks one launcher starts and stops together (set "
                            f"{DIST_TIMEOUT} in the environment to change it there)")
        job = with_dist_timeout(job, placement.dist_timeout_s)
    if placement.node_rank is not None and launcher != "no-ssh":
        raise ExpcError(f"--node-rank starts one node without ssh; it does not go with --launcher {launcher}")
    if launcher == "no-ssh":
        if placement.node_rank is None:
            raise ExpcError("--launcher no-ssh needs --node-rank (this node's rank, 0 for the master) "
                            "and --master-addr")
        check_node_rank(placement.node_rank, placement.master_addr, hardware)
        hosts = check_hostfile(read_hostfile(placement.hostfile), hardware) if placement.hostfile else None
        return no_ssh_plan(job, placement.node_rank, placement.master_addr, hosts)
    if launcher == "slurm":
        if placement.hostfile or placement.master_addr:
            raise ExpcError("--launcher slurm takes its nodes and master address from the allocation; "
                            "drop --hostfile and --master-addr")
        return slurm_plan(job, digest, placement.partition, placement.time_limit, placement.dist_timeout_s)
    if placement.hostfile is None:
        nodes = hardware["nodes"]
        raise ExpcError(
            f"the manifest is planned for {nodes} node{'s' if nodes != 1 else ''} (hardware.nodes); "
            "say where to run: --hostfile HOSTS (pdsh, or --launcher mpi), --node-rank R --master-addr H "
            "on each node, or --launcher slurm")
    hosts = check_hostfile(read_hostfile(placement.hostfile), hardware)
    if launcher == "mpi":
        return mpi_plan(job, hosts, placement.master_addr, placement.launcher_args)
    return pdsh_plan(job, hosts, placement.master_addr, placement.launcher_args)


def with_dist_timeout(job: Job, seconds: int) -> Job:
    """The job with every rank's rendezvous timeout set: it goes into `.deepspeed_env` (pdsh,
    mpirun) or the local environment (no-ssh), the only ways a value reaches remote ranks."""
    reviewed = job.manifest["launch"]["env"].get(DIST_TIMEOUT)
    if reviewed is not None and reviewed != str(seconds):
        raise ExpcError(f"--dist-timeout {seconds} disagrees with the manifest's launch.env "
                        f"{DIST_TIMEOUT}={reviewed}; drop one of them")
    return replace(job, env={**job.env, DIST_TIMEOUT: str(seconds)})
