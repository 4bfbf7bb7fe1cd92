"""Multi-node launches simulated on one machine, through DeepSpeed's real launcher.

Two "nodes" are either two ssh-less launcher invocations (`--no_ssh --node_rank 0|1`) or two
loopback addresses behind a private sshd that DeepSpeed reaches through real pdsh (see
loopback_cluster.py). Each launch takes several seconds, so each is made once per module and
several assertions share it. Master ports come from 29600-29699, distinct per launch.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .loopback_cluster import start_cluster

HERE = Path(__file__).resolve().parent
SPEC = HERE / "multinode" / "loopback.jsonnet"
PROBE = HERE / "multinode" / "agreement_probe.py"
ROOT = HERE.parent
BIN = Path(sys.executable).parent
LAUNCH_TIMEOUT = 180


def launch(command, cwd, env=None, timeout=LAUNCH_TIMEOUT) -> subprocess.CompletedProcess:
    """Run one launcher in its own process group; on a timeout the whole group is killed (never
    a `pkill` by name, which would hit launches of other tests)."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"launch timed out after {timeout} s: {' '.join(map(str, command))}\n{out[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, "")


def launch_together(commands, cwd, env=None) -> list[subprocess.CompletedProcess]:
    """Start several launchers at once (one per "node") and wait for all of them."""
    procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True) for c in commands]
    results = []
    for command, proc in zip(commands, procs):
        try:
            out, _ = proc.communicate(timeout=LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            for other in procs:
                if other.poll() is None:
                    os.killpg(other.pid, signal.SIGKILL)
            pytest.fail(f"launch timed out: {' '.join(map(str, command))}")
        results.append(subprocess.CompletedProcess(command, proc.returncode, out, ""))
    return results


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[str, Path]:
    """A scratch project with the loopback manifests: two nodes x 1 process, its single-node twin
    (1 x 2), and a two-node manifest with another seed."""
    import shutil

    root = tmp_path_factory.mktemp("multinode")
    shutil.copytree(ROOT / "lib", root / "lib")
    (root / "specs").mkdir()
    shutil.copy(SPEC, root / "specs" / SPEC.name)
    built = {}
    for name, tla in {"two_nodes": [], "one_node": ["--tla", "nodes=1"], "other_seed": ["--tla", "seed=7"]}.items():
        done = subprocess.run([BIN / "expc", "build", f"specs/{SPEC.name}", *tla], cwd=root,
                              capture_output=True, text=True, check=True)
        built[name] = root / done.stdout.strip()
    return built


def no_ssh_command(node_rank: int, manifest: Path, hostfile: Path, port: int) -> list:
    return [BIN / "deepspeed", "--no_ssh", "--hostfile", hostfile, "--num_nodes", "2", "--num_gpus", "1",
            "--node_rank", str(node_rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
            PROBE, manifest]


def test_ranks_that_see_different_manifests_abort_together(manifests, tmp_path):
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text("node-0 slots=1\nnode-1 slots=1\n")
    a, b = manifests["two_nodes"], manifests["other_seed"]
    results = launch_together([no_ssh_command(0, a, hostfile, 29601),
                               no_ssh_command(1, b, hostfile, 29601)], cwd=tmp_path)
    expected = ("error: ranks disagree, so none of them will train:\n"
                f"  manifest digest: {a.stem[:12]} on rank 0 (host {os.uname().nodename}); "
                f"{b.stem[:12]} on rank 1 (host {os.uname().nodename})\n")
    for result in results:
        assert result.returncode != 0, result.stdout
        assert expected in result.stdout
        assert "agreed" not in result.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


def test_pdsh_reaches_both_loopback_nodes_with_the_env_file(cluster, manifests, tmp_path):
    env_file = tmp_path / ".deepspeed_env"
    env_file.write_text("OMP_NUM_THREADS=1\nDS_ACCELERATOR=cpu\n")
    env = cluster.env()
    env["DS_ENV_FILE"] = str(env_file)
    logs = tmp_path / "logs"
    result = launch([BIN / "deepspeed", "--hostfile", cluster.hostfile(), "--num_gpus", "1",
                     "--master_addr", cluster.hosts[0], "--master_port", "29602",
                     "--enable_each_rank_log", logs, PROBE, manifests["two_nodes"]], cwd=tmp_path, env=env)
    rank_logs = sorted(logs.glob("*_rank*.log"), key=lambda p: p.name.rsplit("_", 1)[1])
    shown = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in rank_logs)
    assert result.returncode == 0, result.stdout + shown
    assert "export OMP_NUM_THREADS=1; export DS_ACCELERATOR=cpu;" in result.stdout
    assert [p.name.rsplit("_", 1)[1] for p in rank_logs] == ["rank0.log", "rank1.log"]
    assert [p.read_text() for p in rank_logs] == ["agreed\n", "agreed\n"]
