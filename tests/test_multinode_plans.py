"""Multi-node launch plans as `expc run --dry-run` shows them: golden texts per launcher."""
from __future__ import annotations

from pathlib import Path

import pytest

from expc.errors import ExpcError
from expc.hosts import Host
from expc.multinode import Job, check_launcher, mpi_plan, no_ssh_plan, pdsh_plan, slurm_plan
from trainer.ranks import adopt_launcher_ranks

GOLDEN = Path(__file__).parent / "multinode" / "golden"
DIGEST = "2472edd46dbafa6e5fc2637fced70be10c970c921d7abc5619961731815e59dc"
CLUSTER = Path("/shared/project")  # a path as it would look on a cluster's shared file system


def job(accelerator="cuda", nodes=2, procs=8, env=None):
    manifest = {"hardware": {"nodes": nodes, "procs_per_node": procs, "accelerator": accelerator},
                "launch": {"threads_per_process": 8, "env": {}}}
    return Job(manifest, CLUSTER / "manifests" / f"{DIGEST}.json", CLUSTER / "runs" / DIGEST,
               CLUSTER / ".venv" / "bin", env or {"OMP_NUM_THREADS": "8", "DS_ACCELERATOR": "cuda",
                                                  "NCCL_IB_HCA": "mlx5"}, master_port=29512)


HOSTS = (Host("gpu-a", 8, 1), Host("gpu-b", 16, 2))


@pytest.mark.parametrize("name, plan", [
    ("pdsh", lambda: pdsh_plan(job(), HOSTS)),
    ("pdsh_master_and_args", lambda: pdsh_plan(job(), HOSTS, "10.1.0.1", "-R ssh")),
    ("no_ssh_node1", lambda: no_ssh_plan(job(), 1, "gpu-a")),
    ("no_ssh_with_hostfile", lambda: no_ssh_plan(job(), 0, "gpu-a", HOSTS)),
    ("mpi", lambda: mpi_plan(job(), HOSTS, launcher_args="--mca btl_tcp_if_include ib0")),
    ("slurm", lambda: slurm_plan(job(), DIGEST, partition="train", time_limit="2-00:00:00")),
    ("slurm_cpu", lambda: slurm_plan(job("cpu", procs=2), DIGEST)),
])
def test_dry_run_text(name, plan, golden):
    golden(GOLDEN / f"{name}.txt", plan().describe())


def test_unknown_launcher():
    with pytest.raises(ExpcError) as caught:
        check_launcher("pdhs")
    assert caught.value.render() == ('unknown launcher "pdhs" (did you mean "pdsh"?); '
                                     "choose one of pdsh, no-ssh, mpi, slurm")


def test_openmpi_ranks_are_adopted_without_mpi4py():
    env = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "MASTER_ADDR": "gpu-a", "MASTER_PORT": "29500"}
    assert adopt_launcher_ranks(env) == "openmpi"
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("3", "4", "1")
    assert adopt_launcher_ranks({"RANK": "0"}) == "deepspeed"
    assert adopt_launcher_ranks({}) == "none"
    with pytest.raises(ExpcError) as caught:
        adopt_launcher_ranks({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2",
                              "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1"})
    assert caught.value.render() == (
        "started by mpirun without MASTER_ADDR and MASTER_PORT: launch with "
        "`expc run MANIFEST --hostfile HOSTS --launcher mpi`, which passes them")
