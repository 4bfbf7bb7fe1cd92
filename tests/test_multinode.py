"""Multi-node runs simulated on one machine: `expc run` through DeepSpeed's real launcher.

Two "nodes" are either two ssh-less `expc run --node-rank 0|1` invocations (one process each), or
two loopback addresses behind a private sshd that DeepSpeed reaches through real pdsh, or through
real mpirun (see loopback_cluster.py). Every two-node run must train to the same weights as the
single-node twin manifest (1 node x 2 processes). Each launch takes 10-30 s, so each is made once
per module and several tests read it. Master ports come from 29600-29699, one per launch; each
launch gets its own scratch project (a run folder is keyed by digest, and a completed digest is
not trained again).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .loopback_cluster import (ADDRESSES, MPI_PACKAGES, PDSH_PACKAGES, SSH_PACKAGES, ensure_packages, start_cluster,
                               unavailable)
from .loopback_slurm import PACKAGES as SLURM_PACKAGES
from .loopback_slurm import start_slurm

HERE = Path(__file__).resolve().parent
SPEC = HERE / "multinode" / "loopback.jsonnet"
ROOT = HERE.parent
BIN = Path(sys.executable).parent
LAUNCH_TIMEOUT = 240
HOST = os.uname().nodename


# A dead peer must not block the others for torch's default 30 minutes: the two-node launches
# pass --dist-timeout (the only way the value reaches ranks started over pdsh or mpirun); the
# single-node twin's ranks read it from the environment.
DIST_TIMEOUT = ["--dist-timeout", 90]


def launch_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["EXPC_DIST_TIMEOUT_S"] = "90"
    return {**env, **(extra or {})}


def start(command, cwd, env=None) -> subprocess.Popen:
    # Its own process group: a timed-out launch is killed as a group, never by a `pkill` by name
    # (which would also hit the launches of other tests).
    return subprocess.Popen([str(c) for c in command], cwd=cwd, env=env or launch_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def finish(procs: list[subprocess.Popen]) -> list[subprocess.CompletedProcess]:
    results = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            for other in procs:
                if other.poll() is None:
                    os.killpg(other.pid, signal.SIGKILL)
            pytest.fail(f"a launch timed out: {proc.args}")
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, ""))
    return results


def scratch_project(folder: Path, built: Path) -> Path:
    """A project holding the built manifests, with no runs yet."""
    shutil.copytree(built / "lib", folder / "lib")
    shutil.copytree(built / "manifests", folder / "manifests")
    (folder / "specs").mkdir()
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The loopback manifests: two nodes x 1 process (seed 1337, 7 and 8) and the single-node
    twin of the first (1 node x 2 processes)."""
    root = tmp_path_factory.mktemp("built")
    shutil.copytree(ROOT / "lib", root / "lib")
    (root / "specs").mkdir()
    shutil.copy(SPEC, root / "specs" / SPEC.name)
    for tla in ([], ["--tla", "nodes=1"], ["--tla", "seed=7"], ["--tla", "seed=8"]):
        subprocess.run([BIN / "expc", "build", f"specs/{SPEC.name}", *tla], cwd=root, check=True,
                       capture_output=True)
    return root


def manifest(project: Path, nodes: int = 2, seed: int = 1337) -> Path:
    for path in sorted((project / "manifests").glob("*.json")):
        if path.name == "index.json":
            continue
        data = json.loads(path.read_text())
        if data["hardware"]["nodes"] == nodes and data["seed"] == seed:
            return path
    raise AssertionError(f"no manifest for nodes={nodes} seed={seed}")


def run_dir(project: Path, manifest_path: Path) -> Path:
    return project / "runs" / manifest_path.stem


def final_weights(run: Path) -> dict:
    """The model weights of the last checkpoint (ZeRO 0-2 keep them whole in rank 0's file)."""
    import torch

    from trainer.rundir import checkpoint_tags

    tag = checkpoint_tags(run / "checkpoints")[-1]
    state = torch.load(run / "checkpoints" / tag / "mp_rank_00_model_states.pt", weights_only=False,
                       map_location="cpu")
    return state["module"]


def losses(run: Path) -> list:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("val_loss")) for r in records]


def assert_same_training(run: Path, reference: Path) -> None:
    import torch

    assert losses(run) == losses(reference)
    ours, theirs = final_weights(run), final_weights(reference)
    assert ours.keys() == theirs.keys()
    different = [name for name in ours if not torch.equal(ours[name], theirs[name])]
    assert not different, f"weights differ from the single-node run: {different}"


@pytest.fixture(scope="module")
def single_node(built, tmp_path_factory) -> Path:
    project = scratch_project(tmp_path_factory.mktemp("single"), built)
    twin = manifest(project, nodes=1)
    [result] = finish([start([BIN / "expc", "run", twin, "--master-port", 29610], project)])
    assert result.returncode == 0, result.stdout
    return run_dir(project, twin)


@pytest.fixture(scope="module")
def no_ssh(built, tmp_path_factory):
    """Two ssh-less launches, one per "node", started together."""
    project = scratch_project(tmp_path_factory.mktemp("no_ssh"), built)
    path = manifest(project)
    results = finish([start([BIN / "expc", "run", path, "--node-rank", rank, "--master-addr", "127.0.0.1",
                             "--master-port", 29611, *DIST_TIMEOUT], project) for rank in (0, 1)])
    return run_dir(project, path), results


def test_two_ssh_less_nodes_train_like_one_node(no_ssh, single_node):
    run, results = no_ssh
    for rank, result in enumerate(results):
        assert result.returncode == 0, result.stdout
        assert (f"training {run.name[:12]}: 2 processes on 2 nodes (no-ssh, this is node {rank}), "
                f"6 steps:") in result.stdout
    assert_same_training(run, single_node)


def test_ssh_less_plan_is_kept_in_the_run_folder(no_ssh):
    run, _ = no_ssh
    assert (run / "hostfile").read_text() == "node-0 slots=1\nnode-1 slots=1\n"
    for node in (0, 1):
        plan = json.loads((run / f"launch-plan-node{node}.json").read_text())
        assert plan["launcher"] == "no-ssh"
        command = plan["commands"][0]
        assert command[:2] == [str(BIN / "deepspeed"), "--no_ssh"]
        assert command[command.index("--node_rank") + 1] == str(node)
    assert sorted(p.name for p in (run / "logs").glob("launcher-node*.log")) == [
        "launcher-node0.log", "launcher-node1.log"]
    meta = json.loads((run / "metadata.json").read_text())
    assert (meta["status"], meta["world_size"]) == ("completed", 2)


def test_ranks_that_see_different_manifests_abort_together(built, tmp_path):
    project = scratch_project(tmp_path / "project", built)
    a, b = manifest(project, seed=7), manifest(project, seed=8)
    results = finish([start([BIN / "expc", "run", path, "--node-rank", rank, "--master-addr", "127.0.0.1",
                             "--master-port", 29612, *DIST_TIMEOUT], project) for rank, path in ((0, a), (1, b))])
    expected = ("error: ranks disagree, so none of them will train:\n"
                f"  manifest digest: {a.stem[:12]} on rank 0 (host {HOST}); "
                f"{b.stem[:12]} on rank 1 (host {HOST})")
    for path, result in zip((a, b), results):
        assert result.returncode == 1, result.stdout
        assert "error: the run failed" in result.stdout
        assert expected.replace("\n", "\n  ") in result.stdout  # the rank log's tail, indented
        assert not list((run_dir(project, path) / "checkpoints").glob("step_*"))


# One fixture per package set, so a package that cannot be installed skips (or, in CI, fails)
# only the tests that need it. apt-get update runs at most once (loopback_cluster.ensure_packages).
def test_missing_packages_skip_outside_ci_and_fail_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="^needs pdsh$"):
        unavailable("needs pdsh")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^needs pdsh \(CI is set, so this fails instead of skipping\)$"):
        unavailable("needs pdsh")


@pytest.fixture(scope="module")
def pdsh_packages():
    ensure_packages(PDSH_PACKAGES)


@pytest.fixture(scope="module")
def mpi_packages():
    ensure_packages(MPI_PACKAGES)


@pytest.fixture(scope="module")
def slurm_packages():
    ensure_packages(SLURM_PACKAGES)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A private sshd on the loopback addresses (pdsh and mpirun both reach the "nodes" over ssh)."""
    ensure_packages(SSH_PACKAGES)
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def pdsh_run(built, pdsh_packages, cluster, tmp_path_factory):
    project = scratch_project(tmp_path_factory.mktemp("pdsh"), built)
    path = manifest(project)
    [result] = finish([start([BIN / "expc", "run", path, "--hostfile", cluster.hostfile(),
                              "--master-port", 29613, *DIST_TIMEOUT], project, cluster.env(launch_env()))])
    return run_dir(project, path), result


def test_pdsh_over_a_private_sshd_trains_like_one_node(pdsh_run, single_node):
    run, result = pdsh_run
    assert result.returncode == 0, result.stdout
    assert f"training {run.name[:12]}: 2 processes on 2 nodes (pdsh), 6 steps:" in result.stdout
    launcher_log = (run / "logs" / "launcher.log").read_text()
    assert "cmd = pdsh -S -f 1024 -w 127.0.0.2,127.0.0.3" in launcher_log
    assert_same_training(run, single_node)


def test_pdsh_ranks_get_the_env_file(pdsh_run):
    run, _ = pdsh_run
    assert (run / ".deepspeed_env").read_text() == (
        "OMP_NUM_THREADS=1\nDS_ACCELERATOR=cpu\nEXPC_DIST_TIMEOUT_S=90\n")
    assert "export OMP_NUM_THREADS=1; export DS_ACCELERATOR=cpu; export EXPC_DIST_TIMEOUT_S=90;" in (
        run / "logs" / "launcher.log").read_text()
    assert (run / "hostfile").read_text() == "127.0.0.2 slots=1\n127.0.0.3 slots=1\n"


def test_mpirun_trains_like_one_node(built, mpi_packages, cluster, single_node, tmp_path):
    project = scratch_project(tmp_path / "project", built)
    path = manifest(project)
    # mpirun refuses root without --allow-run-as-root; the loopback "nodes" talk over lo.
    args = "--allow-run-as-root --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo"
    [result] = finish([start([BIN / "expc", "run", path, "--hostfile", cluster.hostfile(), "--launcher", "mpi",
                              "--launcher-args", args, "--master-port", 29614, *DIST_TIMEOUT], project,
                             cluster.env(launch_env()))])
    assert result.returncode == 0, result.stdout
    run = run_dir(project, path)
    assert "cmd = mpirun -n 2 -hostfile" in (run / "logs" / "launcher.log").read_text()
    assert_same_training(run, single_node)


@pytest.fixture(scope="module")
def slurm(slurm_packages, tmp_path_factory):
    cluster = start_slurm(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


def test_sbatch_on_a_local_slurm_trains_like_one_node(built, slurm, single_node, tmp_path):
    project = scratch_project(tmp_path / "project", built)
    path = manifest(project)
    [result] = finish([start([BIN / "expc", "run", path, "--launcher", "slurm", "--master-port", 29615,
                              *DIST_TIMEOUT], project, slurm.env(launch_env()))])
    assert result.returncode == 0, result.stdout
    run = run_dir(project, path)
    job_id = result.stdout.split("Submitted batch job ")[1].split()[0]
    slurm.wait_for_job(job_id, LAUNCH_TIMEOUT)
    output = (run / "logs" / f"slurm-{job_id}.out").read_text()
    for node in (0, 1):
        assert f"2 processes on 2 nodes (no-ssh, this is node {node})" in output, output + slurm.logs()
    assert json.loads((run / "launch-plan.json").read_text())["launcher"] == "slurm"
    for node in (0, 1):  # the master address is the first node's NodeAddr; the timeout reached each node
        plan = json.loads((run / f"launch-plan-node{node}.json").read_text())
        command = plan["commands"][0]
        assert command[command.index("--master_addr") + 1] == ADDRESSES[0]
        assert plan["env"]["EXPC_DIST_TIMEOUT_S"] == "90"
    assert_same_training(run, single_node)


def test_a_sweep_under_slurm_is_one_array_followed_again_after_ctrl_c_and_then_cached(slurm, tmp_path):
    """Two single-node members (1 process each, seeds 7 and 8) of one shape: one array, each
    task its member's own `expc run` with its own master port, both tasks on the cluster's two
    one-CPU nodes. Ctrl-C right after the submission leaves the jobs in Slurm; the same command
    follows them to the end without submitting them again; once more, it finds both completed."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "lib", project / "lib")
    (project / "specs").mkdir()
    shutil.copy(SPEC, project / "specs" / SPEC.name)
    sweep = [BIN / "expc", "run", f"specs/{SPEC.name}", "--tla", "nodes=1", "--set", "hardware.procs_per_node=1",
             "--sweep", "seed=7,8", "--launcher", "slurm", "--parallel", 2, "--master-port", 29840]
    submitting = start(sweep, project, slurm.env(launch_env()))
    lines = []
    while not lines or not lines[-1].startswith("submitted array job "):
        lines.append(submitting.stdout.readline())
        assert lines[-1], "".join(lines)  # it ended before submitting
    submitting.send_signal(signal.SIGINT)
    [interrupted] = finish([submitting])
    job = lines[-1].split("submitted array job ")[1].split(":")[0]
    assert interrupted.returncode == 130, "".join(lines) + interrupted.stdout
    assert (f"stopped waiting; the jobs stay in Slurm ({job}): `scancel {job}` stops them; the same command "
            "again follows them (and submits nothing twice)") in interrupted.stdout

    [following] = finish([start(sweep, project, slurm.env(launch_env()))])
    assert following.returncode == 0, following.stdout + slurm.logs()
    assert ("sweep loopback: 2 members; 0 completed (cached), 2 still in Slurm from an earlier submission; "
            "nothing to submit") in following.stdout, following.stdout
    assert "submitted" not in following.stdout
    assert "sweep loopback: 2 of 2 completed (0 already were)" in following.stdout, following.stdout
    [script] = (project / "runs" / "slurm").glob("*.sbatch")
    assert "#SBATCH --array=0-1%2\n" in script.read_text()
    members = {}
    for path in (project / "runs").glob("*/metadata.json"):
        run = path.parent
        plan = json.loads((run / "launch-plan.json").read_text())["array"]
        assert plan["job"] == job and plan["script"] == str(script)
        assert json.loads(path.read_text())["status"] == "completed"
        log = (run / "logs" / f"slurm-{plan['task']}.out").read_text()
        assert f"training {run.name[:12]}: 1 processes, 6 steps" in log, log
        assert f"--master_port={plan['master_port']}" in (run / "logs" / "launcher.log").read_text()
        members[plan["index"]] = plan["master_port"]
    assert members == {0: 29840, 1: 29841}

    [again] = finish([start(sweep, project, slurm.env(launch_env()))])
    assert again.returncode == 0, again.stdout
    assert "sweep loopback: 2 members; 2 completed (cached); nothing to submit" in again.stdout, again.stdout
    assert "submitted" not in again.stdout
    assert "sweep loopback: 2 of 2 completed (2 already were)" in again.stdout
    assert len(list((project / "runs" / "slurm").glob("*.sbatch"))) == 1


@pytest.mark.slow
def test_a_sweep_of_two_node_members_under_slurm_runs_each_task_on_both_nodes(slurm, tmp_path):
    """The array of members on several nodes: each task's srun step starts the ssh-less command
    on both nodes of its allocation (the loopback cluster holds one such task at a time). About
    100 s on the shared 2-core machine, so not in the default suite."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "lib", project / "lib")
    (project / "specs").mkdir()
    shutil.copy(SPEC, project / "specs" / SPEC.name)
    [result] = finish([start([BIN / "expc", "run", f"specs/{SPEC.name}", "--sweep", "seed=7,8", "--launcher", "slurm",
                              "--master-port", 29845, *DIST_TIMEOUT], project, slurm.env(launch_env()))])
    assert result.returncode == 0, result.stdout + slurm.logs()
    assert result.stdout.count("submitted array job ") == 1, result.stdout
    assert ": 2 members on 2 nodes x 1 process each (script runs/slurm/expc-loopback-2x1-" in result.stdout
    assert "sweep loopback: 2 of 2 completed (0 already were)" in result.stdout
    for path in (project / "runs").glob("*/launch-plan.json"):
        run, plan = path.parent, json.loads(path.read_text())["array"]
        log = (run / "logs" / f"slurm-{plan['task']}.out").read_text()
        for node in (0, 1):
            assert f"training {run.name[:12]}: 2 processes on 2 nodes (no-ssh, this is node {node})" in log, log
            node_plan = json.loads((run / f"launch-plan-node{node}.json").read_text())["commands"][0]
            assert node_plan[node_plan.index("--master_port") + 1] == str(plan["master_port"])
            assert node_plan[node_plan.index("--master_addr") + 1] == ADDRESSES[0]
