"""A two-node Slurm cluster on one machine: Debian's slurm-wlm, started by the test.

munged, slurmctld and two slurmd (nodes n0 and n1, addresses 127.0.0.2 and 127.0.0.3, one CPU
each) run in the foreground as children of the test, with their own key, config, state and
logs in a temporary folder and free ports, so the machine's own Slurm or munge (if any) are left
alone. Clients (`sbatch`, `squeue`, `scontrol` in the batch script) find the cluster through
`SLURM_CONF`. Jobs really go through slurmctld's scheduler and srun's step launch.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .loopback_cluster import ADDRESSES, free_port, which

PACKAGES = {"slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client", "munged": "munge"}
NODES = ("n0", "n1")


@dataclass
class LoopbackSlurm:
    folder: Path
    daemons: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "SLURM_CONF": str(self.conf)}

    def wait_for_job(self, job_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listed = subprocess.run(["squeue", "-h", "-j", job_id], env=self.env(dict(os.environ)),
                                    capture_output=True, text=True)
            if listed.returncode == 0 and not listed.stdout.strip():
                return
            time.sleep(0.5)
        subprocess.run(["scancel", job_id], env=self.env(dict(os.environ)))
        raise TimeoutError(f"Slurm job {job_id} still queued or running after {timeout} s")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.folder.glob("*.log")))

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.terminate()
        for daemon in reversed(self.daemons):
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def start_slurm(folder: Path) -> LoopbackSlurm:
    """The caller has installed PACKAGES (loopback_cluster.ensure_packages)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key = folder / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o600)
    munge_socket = folder / "munge.socket"
    host = socket.gethostname()
    ctld_port, *node_ports = (free_port("127.0.0.1"), *(free_port(a) for a in ADDRESSES))
    for node in NODES:
        (folder / "spool" / node).mkdir(parents=True)
    (folder / "state").mkdir()
    (folder / "slurm.conf").write_text("\n".join([
        "ClusterName=expcloopback",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        "AuthType=auth/munge",
        f"AuthInfo=socket={munge_socket}",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool' / '%n'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd-%n.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd-%n.log'}",
        "ProctrackType=proctrack/linuxproc",  # no cgroups: nothing of the machine's is touched
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/builtin",
        "MpiDefault=none",
        "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        *(f"NodeName={node} NodeHostname={host} NodeAddr={address} Port={port} CPUs=1 RealMemory=1000 "
          "State=UNKNOWN" for node, address, port in zip(NODES, ADDRESSES, node_ports)),
        f"PartitionName=loopback Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP",
        "",
    ]))
    cluster = LoopbackSlurm(folder)
    env = cluster.env(dict(os.environ))

    def daemon(*command, log):
        out = open(folder / log, "w")
        cluster.daemons.append(subprocess.Popen([str(c) for c in command], env=env, stdout=out,
                                                stderr=subprocess.STDOUT))

    daemon(which("munged"), "--foreground", "--force", f"--socket={munge_socket}", f"--key-file={key}",
           f"--log-file={folder / 'munged.log'}", f"--pid-file={folder / 'munged.pid'}",
           f"--seed-file={folder / 'munged.seed'}", log="munged.out.log")
    wait_until(lambda: munge_socket.exists(), 10, cluster, "munged")
    daemon(which("slurmctld"), "-D", "-i", "-f", cluster.conf, log="slurmctld.out.log")
    for node in NODES:
        daemon(which("slurmd"), "-D", "-f", cluster.conf, "-N", node, log=f"slurmd-{node}.out.log")

    def idle() -> bool:
        shown = subprocess.run(["sinfo", "-h", "-o", "%D %t"], env=env, capture_output=True, text=True)
        return shown.returncode == 0 and shown.stdout.split() == ["2", "idle"]

    wait_until(idle, 60, cluster, "both nodes idle")
    return cluster


def wait_until(predicate, timeout: float, cluster: LoopbackSlurm, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline or any(d.poll() is not None for d in cluster.daemons):
            logs = cluster.logs()
            cluster.stop()
            raise RuntimeError(f"local Slurm did not come up ({what}):\n{logs}")
        time.sleep(0.3)
