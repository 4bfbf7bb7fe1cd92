"""Faults a run must come through, each with real launches and real file systems:

- kill -9 of `expc run` with its launcher and every rank at seeded random steps, at ZeRO 0, 1
  and 2, then `expc run` again: the weights (and the fp32 master weights of the ZeRO optimizer)
  equal an uninterrupted run's to the bit (slow: 3 references + 6 trials of 2 launches);
- two digests trained at once on two ports both complete (stage_runs trains them in pairs);
- a read-only or full runs/ or manifests/: a small tmpfs mounted by the test (root only,
  skipped otherwise) gives one clear error, exit 1, no traceback and nothing half-written, and
  once space is freed the next run or build succeeds.

The kill -9 inside a checkpoint write, the concurrent `expc run`s of one digest and the SIGTERM
timing are in test_resume.py, on its launches.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import (BIN, SPEC, build_spec, expc, final_weights, kill_group, make_project, start,
                       train_records, wait_for)

PORTS = itertools.count(29880)  # this file's own range, 29880-29919


def expc_run(manifest: Path, *args, cwd: Path):
    return expc("run", manifest, "--master-port", next(PORTS), *args, cwd=cwd)


def metadata(run_dir: Path) -> dict:
    return json.loads((run_dir / "metadata.json").read_text())


# ---- two digests at once -----------------------------------------------------------------------

def test_two_digests_at_once_on_two_ports_both_complete(stage_runs):
    first, second = stage_runs[0], stage_runs[1]  # started together (conftest.stage_runs)
    for run in (first, second):
        assert run.result.returncode == 0, run.result.stderr[-3000:]
        assert metadata(run.run_dir)["status"] == "completed"
    a, b = metadata(first.run_dir), metadata(second.run_dir)
    assert a["session_start"] <= b["end"] and b["session_start"] <= a["end"]  # they did overlap


# ---- kill -9 at seeded random steps (slow) -----------------------------------------------------

TRIAL_STEPS = 30
TRIALS = [(seed, stage) for seed, stage in zip(range(1, 7), itertools.cycle((0, 1, 2)))]


def trial_spec(project: Path, stage: int) -> Path:
    # a line in metrics.jsonl every step, so a trial can stop the run at the step it drew
    return build_spec(project, f"trial{stage}", stage=stage, max_steps=TRIAL_STEPS, log_interval=1,
                      checkpoint_interval=4)


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[int, Path]:
    project = make_project(tmp_path_factory.mktemp("references"))
    runs = {}
    for stage in (0, 1, 2):
        manifest = trial_spec(project, stage)
        result = expc_run(manifest, cwd=project)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[stage] = project / "runs" / manifest.stem
    return runs


def logged_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return max((json.loads(line)["step"] for line in lines if line.endswith("}") and '"loss"' in line), default=0)


def kill_everything(proc: subprocess.Popen, timeout: float = 30) -> None:
    """kill -9 of `expc run` and of the launcher's own session (expc starts it in one, with every
    rank): expc first, so it cannot record anything about the launcher's death."""
    import time

    import psutil

    groups = {os.getpgid(p.pid) for p in psutil.Process(proc.pid).children(recursive=True)} - {proc.pid}
    kill_group(proc)
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for group in groups:  # until no rank holds the port or a file
        while group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


def fp32_master_weights(run_dir: Path) -> dict:
    """The optimizer's fp32 copy of the weights from the ZeRO shards (ZeRO 1-2), consolidated."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from trainer.rundir import checkpoint_tags

    checkpoints = run_dir / "checkpoints"
    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoints), tag=checkpoint_tags(checkpoints)[-1])


@pytest.mark.slow
@pytest.mark.parametrize("seed,stage", TRIALS, ids=[f"seed{s}-zero{z}" for s, z in TRIALS])
def test_kill_9_at_a_random_step_then_resume_is_bit_exact(seed, stage, references, tmp_path):
    from trainer.rundir import latest_step

    kill_at = random.Random(seed).randrange(1, TRIAL_STEPS)
    project = make_project(tmp_path / "project")
    manifest = trial_spec(project, stage)
    run_dir = project / "runs" / manifest.stem
    assert run_dir.name == references[stage].name  # the same experiment as the reference
    proc = start([BIN / "expc", "run", manifest, "--master-port", next(PORTS)], project)
    wait_for(lambda: logged_step(run_dir) >= kill_at, proc, what=f"step {kill_at}")
    kill_everything(proc)
    killed_after, saved = logged_step(run_dir), latest_step(run_dir / "checkpoints")
    print(f"seed {seed}, ZeRO {stage}: drew step {kill_at}, killed after step {killed_after} was logged, "
          f"newest checkpoint {saved}")
    assert metadata(run_dir)["status"] == "running"  # nobody could write anything else
    assert saved <= killed_after < TRIAL_STEPS

    resume = expc_run(manifest, cwd=project)
    assert resume.returncode == 0, resume.stderr[-3000:]
    first_line = resume.stdout.splitlines()[0]
    d12 = manifest.stem[:12]
    if saved:
        assert first_line == f"resuming {d12} from step {saved} of {TRIAL_STEPS} (interrupted): runs/{run_dir.name}/"
    else:
        assert first_line == f"training {d12}: 2 processes, {TRIAL_STEPS} steps: runs/{run_dir.name}/"
    assert train_records(run_dir) == train_records(references[stage])
    resumed, reference = final_weights(run_dir), final_weights(references[stage])
    assert resumed.keys() == reference.keys()
    assert all(resumed[name].equal(reference[name]) for name in resumed)
    if stage:
        resumed, reference = fp32_master_weights(run_dir), fp32_master_weights(references[stage])
        assert resumed.keys() == reference.keys()
        assert all(resumed[name].equal(reference[name]) for name in resumed)


# ---- a read-only or full runs/ or manifests/ -----------------------------------------------------

@pytest.fixture
def mount_tmpfs():
    """mount_tmpfs(folder, size, read_only=False): a tmpfs over `folder`, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = []

    def mount(folder: Path, size: str, read_only: bool = False) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave_kib: int) -> Path:
    """A file taking all but `leave_kib` KiB of the file system under `folder`."""
    import shutil

    filler = folder / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(folder).free - leave_kib * 1024))
    return filler


def leftovers(folder: Path) -> list[str]:
    """Temporary and partial files: what a write cut short would leave."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".partial")))


def test_a_read_only_runs_folder_is_one_clear_error(tmp_path, mount_tmpfs):
    project = make_project(tmp_path / "project")
    manifest = build_spec(project, "readonly", stage=0, max_steps=10)
    runs = mount_tmpfs(project / "runs", "1m", read_only=True)
    result = expc_run(manifest, cwd=project)
    assert result.returncode == 1
    assert result.stderr == (f"error: {runs / manifest.stem}: Read-only file system; nothing can be written "
                             "there until it is mounted read-write\n")
    assert result.stdout == ""


def test_a_full_runs_folder_fails_cleanly_and_the_next_run_succeeds(tmp_path, mount_tmpfs):
    from trainer.rundir import latest_step

    project = make_project(tmp_path / "project")
    manifest = build_spec(project, "full", stage=2, max_steps=20)
    runs = mount_tmpfs(project / "runs", "4m")
    run_dir = runs / manifest.stem
    filler = fill(runs, leave_kib=300)  # room for the run's first files, not for a checkpoint (580 KB)

    failed = expc_run(manifest, cwd=project)
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.lstrip().startswith("error: ")]
    assert errors[0].startswith("error: the run failed (launcher exit status 1, status failed); last lines of "
                                f"runs/{manifest.stem}/logs/"), failed.stderr[-3000:]
    # the failing rank's one line, in the log's tail
    assert errors[1].startswith(f"  error: could not save the checkpoint of step 10 to {run_dir}/checkpoints/"
                                "step_00000010.partial (0."), failed.stderr[-3000:]
    assert errors[1].endswith("; the checkpoints saved before it are kept")
    assert "MiB free on that file system): " in errors[1]
    assert "Traceback" not in failed.stderr
    meta = metadata(run_dir)
    assert meta["status"] == "failed" and "could not save the checkpoint of step 10" in meta["error"]
    assert latest_step(run_dir / "checkpoints") == 0 and leftovers(runs) == []
    assert not (run_dir / "checkpoints" / "latest").exists()

    filler.unlink()  # space freed: the same command now trains the run
    again = expc_run(manifest, cwd=project)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.splitlines()[0] == f"training {manifest.stem[:12]}: 2 processes, 20 steps: runs/{manifest.stem}/"
    assert metadata(run_dir)["status"] == "completed" and latest_step(run_dir / "checkpoints") == 20
    assert leftovers(runs) == []


SWEEP = """\
local expc = import 'expc.libsonnet';
local base = {base};
expc.sweep.grid(base, {{ seed: std.range(1, 40) }})
"""


def sweep_spec(project: Path) -> Path:
    base = SPEC.split("\n", 1)[1].format(stage=0, hardware="cpu_laptop", dropout=0.1, data="{ source: 'synthetic', val_fraction: 0.1 }",
                                         monitor="{}", max_steps=10, log_interval=5, eval_interval=5,
                                         checkpoint_interval=10, sample_tokens=0)
    spec = project / "specs" / "sweep.jsonnet"
    spec.write_text(SWEEP.format(base=base.strip()))
    return spec


def whole_manifests(manifests: Path) -> list[str]:
    """Every manifest file there, each checked to hold exactly what its name says."""
    from expc.compile.canonical import load_manifest

    names = sorted(p.name for p in manifests.glob("*.json") if p.name != "index.json")
    for name in names:
        load_manifest(manifests / name)  # raises on a file cut short or not matching its digest
    return names


def test_a_read_only_manifests_folder_is_one_clear_error(tmp_path, mount_tmpfs):
    project = make_project(tmp_path / "project")
    spec = sweep_spec(project)
    manifests = mount_tmpfs(project / "manifests", "1m", read_only=True)
    result = expc("build", spec, cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {manifests}/")
    assert result.stderr.endswith(".json: Read-only file system; nothing can be written there until it is mounted "
                                  "read-write\n")
    assert "Traceback" not in result.stderr


def test_a_full_manifests_folder_leaves_only_whole_manifests(tmp_path, mount_tmpfs):
    project = make_project(tmp_path / "project")
    spec = sweep_spec(project)
    manifests = mount_tmpfs(project / "manifests", "1m")
    filler = fill(manifests, leave_kib=60)  # a few of the 40 members fit, not all

    result = expc("build", spec, cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {manifests}/")
    assert result.stderr.endswith(".json: No space left on device; free some space there and run the command again\n")
    assert "Traceback" not in result.stderr
    # The fault struck mid-sweep, in the build's staging folder: nothing of a failed build is left
    # in manifests/ (not even its whole files), and no index.
    assert whole_manifests(manifests) == [] and leftovers(manifests) == []
    assert [p.name for p in manifests.iterdir()] == [filler.name]

    filler.unlink()
    again = expc("build", spec, cwd=project)
    assert again.returncode == 0, again.stderr
    assert len(whole_manifests(manifests)) == 40 and leftovers(manifests) == []
    from expc.compile.write import read_index
    from expc.project import Project

    index = read_index(Project(project))
    assert sorted(f"{d}.json" for d in index["manifests"]) == whole_manifests(manifests)
