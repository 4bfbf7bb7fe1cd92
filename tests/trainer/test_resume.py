"""Interrupt a run twice, then finish it: Ctrl-C to `expc run` (every rank saves, status
preempted), then kill -9 of a plain `deepspeed` launch after a checkpoint (no chance to save),
then `expc run` resumes. The final weights and every logged loss equal those of the
uninterrupted ZeRO-2 run of the same manifest, to the bit (dropout is on: RNG states matter)."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import (PORTS, STAGE_STEPS, BIN, build_spec, expc_run, final_weights, finish, make_project,
                       start, train_records, wait_for)


def metadata(run_dir: Path) -> dict:
    return json.loads((run_dir / "metadata.json").read_text())


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, stage_runs):
    from expc.canonical import load_manifest
    from expc.launch import LaunchOptions, plan_launch
    from trainer.rundir import latest_step

    project = make_project(tmp_path_factory.mktemp("resume"))
    manifest = build_spec(project, "stage2", stage=2, max_steps=STAGE_STEPS)
    assert manifest.name == stage_runs[2].manifest.name  # the same experiment, so the same digest
    run_dir = project / "runs" / manifest.stem
    checkpoints = run_dir / "checkpoints"
    seen = {}

    # 1. Ctrl-C: expc passes SIGTERM to the launch's process group; the ranks save and stop.
    proc = start([BIN / "expc", "run", manifest, "--master-port", next(PORTS)], project)
    wait_for(lambda: latest_step(checkpoints) >= 10, proc, what="the first checkpoint")
    proc.send_signal(signal.SIGINT)
    seen["ctrl_c"] = finish(proc)
    seen["after_ctrl_c"] = metadata(run_dir)

    # 2. kill -9 of a plain deepspeed launch (the command `expc run --dry-run` prints), after
    #    it saved one more checkpoint.
    data, digest = load_manifest(manifest)
    plan = plan_launch(data, LaunchOptions(manifest.resolve(), run_dir.resolve(), BIN, next(PORTS)))
    first_stop = latest_step(checkpoints)
    proc = start(plan.argv, project, env=plan.env)
    wait_for(lambda: latest_step(checkpoints) > first_stop, proc, what="a checkpoint after the resume")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the ranks die with the group; wait until none is left
        try:
            os.killpg(proc.pid, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            break
    seen["killed_at"] = latest_step(checkpoints)
    seen["after_kill"] = metadata(run_dir)

    # 3. expc run resumes from the newest complete checkpoint and finishes.
    seen["resume"] = expc_run(manifest, cwd=project)
    return manifest, run_dir, first_stop, seen


def test_ctrl_c_saves_and_stops_every_rank(interrupted_run):
    manifest, run_dir, first_stop, seen = interrupted_run
    d12 = manifest.stem[:12]
    assert seen["ctrl_c"].returncode == 130, seen["ctrl_c"].stderr[-3000:]
    assert seen["ctrl_c"].stdout.splitlines()[-1] == \
        f"{d12} stopped at step {first_stop} with a checkpoint; `expc run {d12}` resumes it"
    assert "stopping: every rank saves a checkpoint, then exits (Ctrl-C again kills)" in seen["ctrl_c"].stderr
    assert seen["after_ctrl_c"]["status"] == "preempted" and seen["after_ctrl_c"]["step"] == first_stop
    assert 10 <= first_stop < STAGE_STEPS


def test_kill_9_leaves_a_resumable_run(interrupted_run):
    manifest, run_dir, first_stop, seen = interrupted_run
    assert seen["after_kill"]["status"] == "running"  # nobody could write anything else
    assert first_stop < seen["killed_at"] < STAGE_STEPS
    resume = seen["resume"]
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert resume.stdout.splitlines()[0] == (f"resuming {manifest.stem[:12]} from step {seen['killed_at']} of "
                                             f"{STAGE_STEPS} (interrupted): runs/{manifest.stem}/")
    meta = metadata(run_dir)
    assert meta["status"] == "completed" and meta["resumed_from"] == seen["killed_at"]


def test_resumed_run_equals_the_uninterrupted_one(interrupted_run, stage_runs):
    manifest, run_dir, _, _ = interrupted_run
    reference = stage_runs[2].run_dir
    assert train_records(run_dir) == train_records(reference)
    resumed, uninterrupted = final_weights(run_dir), final_weights(reference)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert resumed[name].equal(uninterrupted[name]), name


def test_wandb_run_id_is_kept_across_resumes(interrupted_run):
    manifest, run_dir, _, _ = interrupted_run
    sessions = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(sessions) == 3  # one per launch, all the same W&B run
    assert {p.name.split("-", 3)[3] for p in sessions} == {f"expc-{manifest.stem[:16]}"}
