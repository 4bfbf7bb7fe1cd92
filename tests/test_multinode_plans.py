"""Multi-node launch plans as `expc run --dry-run` shows them: golden texts per launcher."""
from __future__ import annotations

from pathlib import Path

import pytest

from expc.errors import ExpcError
from expc.launch.hosts import Host
from expc.launch.multinode import Job, Placement, mpi_plan, no_ssh_plan, pdsh_plan, plan_placement, slurm_plan
from trainer.ranks import adopt_launcher_ranks

GOLDEN = Path(__file__).parent / "multinode" / "golden"
DIGEST = "2472edd46dbafa6e5fc2637fced70be10c970c921d7abc5619961731815e59dc"
CLUSTER = Path("/shared/project")  # a path as it would look on a cluster's shared file system


def job(accelerator="cuda", nodes=2, procs=8, env=None, launch_env=None):
    manifest = {"hardware": {"nodes": nodes, "procs_per_node": procs, "accelerator": accelerator},
                "launch": {"threads_per_process": 8, "env": launch_env or {}}}
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


def test_dist_timeout_reaches_every_rank_through_the_plan(tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("gpu-a slots=8\ngpu-b slots=8\n")
    pdsh = plan_placement(job(), DIGEST, Placement(hostfile=hosts, dist_timeout_s=600))
    assert pdsh.files[".deepspeed_env"] == (
        "OMP_NUM_THREADS=8\nDS_ACCELERATOR=cuda\nNCCL_IB_HCA=mlx5\nEXPC_DIST_TIMEOUT_S=600\n")
    mpi = plan_placement(job(), DIGEST, Placement(hostfile=hosts, launcher="mpi", dist_timeout_s=600))
    assert "EXPC_DIST_TIMEOUT_S=600\n" in mpi.files[".deepspeed_env"]
    no_ssh = plan_placement(job(), DIGEST, Placement(node_rank=1, master_addr="gpu-a", dist_timeout_s=600))
    assert no_ssh.env["EXPC_DIST_TIMEOUT_S"] == "600"
    slurm = plan_placement(job(), DIGEST, Placement(launcher="slurm", dist_timeout_s=600))
    assert slurm.files["slurm.sbatch"].splitlines()[-1].endswith(
        "--master-addr \"$MASTER_ADDR\" --master-port 29512 --dist-timeout 600'")
    # without the option, nothing is added: the rank reads torch's default
    assert "EXPC_DIST_TIMEOUT_S" not in plan_placement(job(), DIGEST, Placement(hostfile=hosts)).files[".deepspeed_env"]


@pytest.mark.parametrize("plan_job, placement, message", [
    (job(nodes=1), Placement(dist_timeout_s=60),
     "--dist-timeout is for launches over several nodes; this manifest is planned for 1 node, whose ranks "
     "one launcher starts and stops together (set EXPC_DIST_TIMEOUT_S in the environment to change it there)"),
    (job(launch_env={"EXPC_DIST_TIMEOUT_S": "90"}), Placement(node_rank=0, master_addr="gpu-a", dist_timeout_s=60),
     "--dist-timeout 60 disagrees with the manifest's launch.env EXPC_DIST_TIMEOUT_S=90; drop one of them"),
])
def test_dist_timeout_refusals(plan_job, placement, message):
    with pytest.raises(ExpcError) as caught:
        plan_placement(plan_job, DIGEST, placement)
    assert caught.value.render() == message


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


@pytest.fixture(scope="module")
def two_node_project(tmp_path_factory):
    """A scratch project holding the two-node loopback manifest."""
    import shutil
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("plans")
    shutil.copytree(Path(__file__).parent.parent / "lib", root / "lib")
    (root / "specs").mkdir()
    shutil.copy(Path(__file__).parent / "multinode" / "loopback.jsonnet", root / "specs" / "loopback.jsonnet")
    expc = Path(sys.executable).parent / "expc"
    built = subprocess.run([expc, "build", "specs/loopback.jsonnet"], cwd=root, capture_output=True, text=True,
                           check=True)
    return root, root / built.stdout.strip()


def expc_run(project, *args):
    import subprocess
    import sys

    return subprocess.run([Path(sys.executable).parent / "expc", "run", *map(str, args)], cwd=project,
                          capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    ([], "error: the manifest is planned for 2 nodes (hardware.nodes); say where to run: --hostfile HOSTS "
         "(pdsh, or --launcher mpi), --node-rank R --master-addr H on each node, or --launcher slurm\n"),
    (["--node-rank", "1"], "error: --node-rank 1 needs --master-addr: the address of node 0, which every "
                           "node can reach\n"),
    (["--node-rank", "1", "--master-addr", "h0", "--launcher", "mpi"],
     "error: --node-rank starts one node without ssh; it does not go with --launcher mpi\n"),
    (["--launcher", "slurm", "--master-addr", "h0"],
     "error: --launcher slurm takes its nodes and master address from the allocation; drop --hostfile "
     "and --master-addr\n"),
    (["--node-rank", "1", "--master-addr", "h0", "--rerun"],
     "error: --rerun goes to node 0 only: it moves the previous attempt aside, for every node\n"),
])
def test_run_refuses_an_incomplete_placement(two_node_project, args, message):
    project, manifest = two_node_project
    result = expc_run(project, manifest, *args)
    assert (result.returncode, result.stderr, result.stdout) == (1, message, "")
    assert not (project / "runs").exists()  # nothing written


def test_run_checks_the_hostfile_before_anything_starts(two_node_project, tmp_path):
    project, manifest = two_node_project
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("gpu-a slots=1\n")
    result = expc_run(project, manifest, "--hostfile", hosts)
    assert (result.returncode, result.stderr) == (
        1, f"error: {hosts}: names 1 host, but the manifest is planned for 2 nodes (hardware.nodes); "
           "list exactly the 2 nodes to run on\n")


def test_dry_run_writes_nothing_and_shows_the_env_file(two_node_project, tmp_path):
    project, manifest = two_node_project
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("gpu-a slots=4\ngpu-b slots=4\n")
    result = expc_run(project, manifest, "--hostfile", hosts, "--dry-run", "--master-port", 29650)
    assert result.returncode == 0, result.stderr
    run_dir = project / "runs" / manifest.stem
    assert result.stdout.startswith("# launcher: pdsh\n")
    assert f"DS_ENV_FILE={run_dir}/.deepspeed_env " in result.stdout
    assert "# --- hostfile ---\ngpu-a slots=1\ngpu-b slots=1\n# --- .deepspeed_env ---\nOMP_NUM_THREADS=1\n" \
        in result.stdout
    assert not run_dir.exists()
