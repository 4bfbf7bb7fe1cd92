"""A sweep under `--launcher slurm` without a cluster: the arrays (one per shape), their throttle
and master ports, the members skipped before submission, the tasks an earlier submission still
has in Slurm, and the refusals. The real submission to a local Slurm is in tests/test_multinode.py
(test_a_sweep_under_slurm_is_one_array_and_a_second_submission_submits_nothing)."""
from __future__ import annotations

import json

import pytest

from expc.compile import build
from expc.launch.executor import members_of, sweep_names
from expc.launch.slurm_sweep import SlurmOptions, SlurmSweep

from .conftest import run_cli as cli

# Four members of two shapes: 1 node x 2 processes and 2 nodes x 2 processes.
SPEC = """local expc = import 'expc.libsonnet';
expc.sweep.grid(expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(),
  global_batch_size:: 8, micro_batch_size:: 2,
}, { lr: ['1e-3', '2e-3'], 'hardware.nodes': [1, 2] })
"""


@pytest.fixture
def built(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.delenv("EXPC_RUNS_DIR", raising=False)
    (project / "specs" / "shapes.jsonnet").write_text(SPEC)
    return build([project / "specs" / "shapes.jsonnet"])


def by_name(built) -> dict:
    return {m.name: m for m in built}


def fake_run(project, digest: str, status: str) -> None:
    folder = project / "runs" / digest
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"status": status, "step": 50}))


def scripts(out: str) -> list[str]:
    """The sbatch scripts of a dry run's output: what follows each array's header line."""
    return [part.split("\n", 1)[1] for part in out.split("# --- array ")[1:]]


def test_one_array_per_shape_with_the_throttle_and_a_port_per_task(built, project, capsys):
    code, out, err = cli(["run", "specs/shapes.jsonnet", "--launcher", "slurm", "--parallel", "3",
                          "--master-port", "29850", "--dist-timeout", "90", "--dry-run"], capsys)
    assert code == 0, err
    names = by_name(built)
    one, two = [names[f"hardware.nodes=1,lr={lr}"] for lr in ("1e-3", "2e-3")], \
        [names[f"hardware.nodes=2,lr={lr}"] for lr in ("1e-3", "2e-3")]
    assert "# sweep shapes: 4 members; 0 completed (cached); 4 to submit in 2 arrays\n" in out
    assert "# --- array 1 of 2: 2 members, 1 node x 2 processes each, master ports 29850-29851; sbatch " \
        "runs/slurm/expc-shapes-1x2-" in out
    assert "# --- array 2 of 2: 2 members, 2 nodes x 2 processes each, master ports 29852-29853; sbatch " \
        "runs/slurm/expc-shapes-2x2-" in out
    single, multi = scripts(out)
    for script, members, nodes, first_port in ((single, one, 1, 29850), (multi, two, 2, 29852)):
        assert "#SBATCH --array=0-1%3\n" in script
        assert f"#SBATCH --nodes={nodes}\n#SBATCH --ntasks-per-node=1\n#SBATCH --cpus-per-task=2\n" in script
        assert f"#SBATCH --output={project / 'runs' / 'slurm'}/%x-%A_%a.out\n" in script
        for task, m in enumerate(members):
            assert (f"  {task}) member={m.name} manifest={m.path.resolve()} run={project / 'runs' / m.digest} "
                    f"port={first_port + task}\n") in script
    runs = project / "runs"
    assert single.endswith(f'run "$manifest" --runs-dir {runs} --master-port "$port"\n')
    assert ("srun --nodes=2 --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c 'exec " in multi
            and f' run "$0" --runs-dir {runs} --node-rank "$SLURM_NODEID" --master-addr "$MASTER_ADDR" '
                '--master-port "$1" --dist-timeout 90\' "$manifest" "$port"\n' in multi)
    assert "--dist-timeout" not in single  # one node's ranks start and stop together
    assert 'wandb=\'{"sweep": "shapes", "member": "hardware.nodes=1,lr=1e-3", "axes": {"hardware.nodes": 1, ' \
        '"lr": 0.001}}\' ;;' in single
    assert not runs.exists()  # a dry run writes nothing


def test_completed_members_are_not_submitted_nor_failed_ones_without_retry_failed(built, project, capsys):
    names = by_name(built)
    fake_run(project, names["hardware.nodes=1,lr=1e-3"].digest, "completed")
    fake_run(project, names["hardware.nodes=1,lr=2e-3"].digest, "failed")
    fake_run(project, names["hardware.nodes=2,lr=1e-3"].digest, "preempted")  # resumes: submitted
    args = ["run", "specs/shapes.jsonnet", "--launcher", "slurm", "--dry-run"]
    code, out, err = cli(args, capsys)
    assert code == 0, err
    assert ("# sweep shapes: 4 members; 1 completed (cached), 1 failed (skipped; --retry-failed submits them); "
            "2 to submit in 1 array\n") in out
    [script] = scripts(out)
    assert "#SBATCH --array=0-1\n" in script  # no --parallel: no throttle
    assert "hardware.nodes=2,lr=1e-3" in script and "hardware.nodes=2,lr=2e-3" in script
    code, out, err = cli(args + ["--retry-failed"], capsys)
    assert "1 completed (cached); 3 to submit in 2 arrays\n" in out
    assert "hardware.nodes=1,lr=2e-3" in scripts(out)[0]


def test_a_task_still_in_slurm_is_followed_not_submitted_again(built, project):
    names, sweep = sweep_names([str(m.path) for m in built], built)
    members = members_of([str(m.path) for m in built], names, None, single_node=False)
    waiting = members[0]
    waiting.run_dir.mkdir(parents=True)
    (waiting.run_dir / "launch-plan.json").write_text(json.dumps(
        {"launcher": "slurm", "array": {"job": "41", "task": "41_0", "index": 0, "master_port": 29850}}))
    runner = SlurmSweep(members, sweep, SlurmOptions(master_port=29850), project / "runs")
    runner.classify({"41_0": "RUNNING"})
    assert (waiting.state, waiting.port, runner.tasks) == ("running", 29850, {waiting.digest: "41_0"})
    arrays = runner.plan()
    submitted = [m for a in arrays for m in a.members]
    assert waiting not in submitted and len(submitted) == 3
    assert 29850 not in [p for a in arrays for p in a.ports]  # its port stays its own
    # once Slurm no longer lists it, its folder decides (nothing there: submitted again)
    runner = SlurmSweep(members, sweep, SlurmOptions(), project / "runs")
    runner.classify({})
    assert waiting.state == "queued"


def test_without_sbatch_nothing_is_written(built, project, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = cli(["run", "specs/shapes.jsonnet", "--launcher", "slurm"], capsys)
    assert (code, err) == (1, "error: sbatch is not on PATH; run this from a Slurm login node (`--dry-run` "
                              "prints the scripts without submitting)\n")
    assert not (project / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--devices", "0"], "--devices names GPUs of this machine; under --launcher slurm, Slurm gives each member's "
                         "job its GPUs (--gpus-per-node from the manifest's hardware)"),
    (["--rerun"], "--rerun trains one completed run again; a sweep under --launcher slurm skips completed members "
                  "(run that member alone with `expc run DIGEST --rerun`)"),
    (["--hostfile", "hosts.txt", "--master-addr", "h0"],
     "--launcher slurm takes its nodes and master address from each job's allocation; drop --hostfile, "
     "--master-addr"),
])
def test_refusals_under_slurm(built, capsys, args, message):
    code, _, err = cli(["run", "specs/shapes.jsonnet", "--launcher", "slurm", "--parallel", "2", *args], capsys)
    assert (code, err) == (1, f"error: {message}\n")


@pytest.mark.parametrize("args, message", [
    (["--no-wait"], "--no-wait goes with --launcher slurm (a sweep's jobs); on this machine, `expc run` trains "
                    "while you wait"),
    (["--retry-failed"], "--retry-failed goes with --parallel N or --launcher slurm"),
])
def test_slurm_options_without_slurm(built, capsys, args, message):
    code, _, err = cli(["run", "specs/shapes.jsonnet", *args], capsys)
    assert (code, err) == (1, f"error: {message}\n")


def test_a_spec_of_one_experiment_is_an_array_of_one_and_a_manifest_keeps_the_one_job_form(project, capsys,
                                                                                          monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.delenv("EXPC_RUNS_DIR", raising=False)
    (project / "specs" / "alone.jsonnet").write_text(SPEC.replace("expc.sweep.grid(", "(").split(", { lr:")[0]
                                                     + ")\n")
    code, out, err = cli(["run", "specs/alone.jsonnet", "--launcher", "slurm", "--dry-run"], capsys)
    assert code == 0, err
    assert "# sweep alone: 1 member; 0 completed (cached); 1 to submit in 1 array\n" in out
    assert "#SBATCH --array=0-0\n" in out
    [manifest] = out.splitlines()[:1]
    code, out, err = cli(["run", manifest, "--launcher", "slurm", "--dry-run"], capsys)
    assert code == 0, err
    assert out.startswith("# launcher: slurm\n")  # multinode.py's one job
