"""Interrupt runs, then finish them; the final weights and every logged loss must equal those of
the uninterrupted run of the same manifest (stage_runs), to the bit (dropout is on: RNG states
matter).

  ZeRO 2: Ctrl-C to `expc run` (every rank saves, status preempted, exit 130), then kill -9 of a
          plain `deepspeed` launch after a checkpoint (no chance to save), then `expc run`.
  ZeRO 1: two `expc run`s started together (one trains, the other refuses), SIGTERM to the one
          training, as a preempting scheduler sends it (saved, preempted, exit 0), then `expc run`.
  ZeRO 0: kill -9 of a plain `deepspeed` launch while it writes a checkpoint after its first,
          then `expc run`.
"""
from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from .conftest import (PORTS, STAGE_STEPS, BIN, build_spec, expc_run, final_weights, finish, kill_group,
                       kill_while_saving, make_project, start, train_records, wait_for)


def metadata(run_dir: Path) -> dict:
    return json.loads((run_dir / "metadata.json").read_text())


def plain_launch(manifest: Path, run_dir: Path):
    """The command `expc run --dry-run` prints, started directly."""
    from expc.compile.canonical import load_manifest
    from expc.launch.commands import LaunchOptions, plan_launch

    data, _ = load_manifest(manifest)
    plan = plan_launch(data, LaunchOptions(manifest.resolve(), run_dir.resolve(), BIN, next(PORTS)))
    return start(plan.argv, manifest.parent.parent, env=plan.env)


def same_experiment(project: Path, stage: int, stage_runs) -> Path:
    manifest = build_spec(project, f"stage{stage}", stage=stage, max_steps=STAGE_STEPS, monitors=stage == 1)
    assert manifest.name == stage_runs[stage].manifest.name  # the same experiment, so the same digest
    return manifest


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, stage_runs):
    from trainer.rundir import latest_step

    project = make_project(tmp_path_factory.mktemp("resume"))
    manifest = same_experiment(project, 2, stage_runs)
    run_dir = project / "runs" / manifest.stem
    checkpoints = run_dir / "checkpoints"
    seen = {}

    # 1. Ctrl-C: expc passes SIGTERM to the ranks; they save and stop.
    proc = start([BIN / "expc", "run", manifest, "--master-port", next(PORTS)], project)
    wait_for(lambda: latest_step(checkpoints) >= 10, proc, what="the first checkpoint")
    proc.send_signal(signal.SIGINT)
    seen["ctrl_c"] = finish(proc)
    seen["after_ctrl_c"] = metadata(run_dir)

    # 2. kill -9 of a plain deepspeed launch, after it saved one more checkpoint.
    first_stop = latest_step(checkpoints)
    proc = plain_launch(manifest, run_dir)
    wait_for(lambda: latest_step(checkpoints) > first_stop, proc, what="a checkpoint after the resume")
    kill_group(proc)
    seen["killed_at"] = latest_step(checkpoints)
    seen["after_kill"] = metadata(run_dir)

    # 3. expc run resumes from the newest complete checkpoint and finishes.
    seen["resume"] = expc_run(manifest, cwd=project)
    return manifest, run_dir, first_stop, seen


@pytest.fixture(scope="module")
def sigterm_run(tmp_path_factory, stage_runs):
    """ZeRO 1: two `expc run`s of the digest started together (one trains, the other refuses),
    then SIGTERM to the one training after its first checkpoint, then `expc run` again."""
    from trainer.rundir import latest_step

    project = make_project(tmp_path_factory.mktemp("sigterm"))
    manifest = same_experiment(project, 1, stage_runs)
    run_dir = project / "runs" / manifest.stem
    both = [start([BIN / "expc", "run", manifest, "--master-port", next(PORTS)], project) for _ in range(2)]
    while all(p.poll() is None for p in both):
        time.sleep(0.05)
    refused = next(p for p in both if p.poll() is not None)
    proc = next(p for p in both if p is not refused)
    seen = {"refused": finish(refused)}
    wait_for(lambda: latest_step(run_dir / "checkpoints") >= 10, proc, what="the first checkpoint")
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stopped = finish(proc)
    seen["stop_seconds"] = time.monotonic() - signalled
    print(f"SIGTERM to `expc run` -> every rank saved and exited: {seen['stop_seconds']:.1f} s")
    seen.update(sigterm=stopped, after_sigterm=metadata(run_dir), saved=latest_step(run_dir / "checkpoints"))
    seen["resume"] = expc_run(manifest, cwd=project)
    return manifest, run_dir, seen


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, stage_runs):
    """ZeRO 0: kill -9 of a plain launch while it writes a checkpoint after its first, then
    `expc run`."""
    from trainer.rundir import latest_step

    project = make_project(tmp_path_factory.mktemp("kill9"))
    manifest = same_experiment(project, 0, stage_runs)
    run_dir = project / "runs" / manifest.stem
    proc = plain_launch(manifest, run_dir)
    seen = {"at_kill": kill_while_saving(proc, run_dir / "checkpoints", after_step=10)}
    print(f"kill -9 inside a checkpoint write: {seen['at_kill']}")
    seen.update(killed_at=latest_step(run_dir / "checkpoints"), after_kill=metadata(run_dir))
    seen["resume"] = expc_run(manifest, cwd=project)
    return manifest, run_dir, seen


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


def assert_same_as_uninterrupted(run_dir: Path, reference: Path) -> None:
    assert train_records(run_dir) == train_records(reference)
    resumed, uninterrupted = final_weights(run_dir), final_weights(reference)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert resumed[name].equal(uninterrupted[name]), name


def test_resumed_run_equals_the_uninterrupted_one(interrupted_run, stage_runs):
    _, run_dir, _, _ = interrupted_run
    assert_same_as_uninterrupted(run_dir, stage_runs[2].run_dir)


def test_sigterm_to_expc_run_saves_and_exits_0_as_preempted(sigterm_run):
    manifest, run_dir, seen = sigterm_run
    d12 = manifest.stem[:12]
    stopped = seen["sigterm"]
    assert stopped.returncode == 0, stopped.stderr[-3000:]  # a scheduler asked; the run stopped cleanly
    assert "stopping: every rank saves a checkpoint, then exits (Ctrl-C again kills)" in stopped.stderr
    step = seen["after_sigterm"]["step"]
    assert stopped.stdout.splitlines()[-1] == \
        f"{d12} stopped at step {step} with a checkpoint; `expc run {d12}` resumes it"
    assert seen["after_sigterm"]["status"] == "preempted" and seen["saved"] == step
    assert 10 <= step < STAGE_STEPS
    resume = seen["resume"]
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert resume.stdout.splitlines()[0] == (f"resuming {d12} from step {step} of {STAGE_STEPS} (preempted): "
                                             f"runs/{manifest.stem}/")


def test_two_expc_runs_of_one_digest_one_trains_the_other_refuses(sigterm_run):
    manifest, run_dir, seen = sigterm_run
    refused = seen["refused"]
    assert refused.returncode == 1 and refused.stdout == ""  # no "training ..." line: it started nothing
    holder = (run_dir / ".lock").read_text().strip()  # the resume's pid now; the first holder's before
    assert holder.isdigit()
    # (the holder writes its pid just after taking the lock: a refusal in between names nobody)
    assert re.fullmatch(re.escape(f"error: {manifest.stem[:12]} is being run by another `expc run` on this machine")
                        + r"( \(process \d+\))?" + re.escape(
                            f"; nothing was started. Wait for it to finish (its progress is in "
                            f"runs/{manifest.stem}/metrics.jsonl) or stop it, then run this again\n"),
                        refused.stderr), refused.stderr
    # exactly one launch trained: the SIGTERMed one and the resume wrote rank logs, the refused none
    launches = {p.name.split("_rank")[0] for p in (run_dir / "logs").glob("*_rank*.log")}
    assert len(launches) == 2


def test_sigterm_stops_within_30_s(sigterm_run):
    _, _, seen = sigterm_run
    assert seen["stop_seconds"] < 30  # the contract; the figure itself is in docs/reliability.md


def test_kill_9_while_writing_a_checkpoint_keeps_the_previous_one(killed_run):
    manifest, run_dir, seen = killed_run
    at_kill = seen["at_kill"]
    # caught mid-write: the new checkpoint is still a .partial folder, `latest` names the previous one
    previous = f"step_{at_kill['latest_step']:08d}"
    assert at_kill["partial"].endswith(".partial") and at_kill["partial"] > previous
    assert at_kill["latest"] == previous and seen["killed_at"] == at_kill["latest_step"] >= 10
    assert seen["after_kill"]["status"] == "running"
    assert seen["killed_at"] < STAGE_STEPS
    # the resume cleared the partial folder when it saved
    assert not list((run_dir / "checkpoints").glob("*.partial"))
    resume = seen["resume"]
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert resume.stdout.splitlines()[0] == (f"resuming {manifest.stem[:12]} from step {seen['killed_at']} of "
                                             f"{STAGE_STEPS} (interrupted): runs/{manifest.stem}/")


@pytest.mark.parametrize("stage", [0, 1])
def test_resume_is_bit_exact_at_zero_0_and_1(stage, request, stage_runs):
    _, run_dir, _ = request.getfixturevalue({0: "killed_run", 1: "sigterm_run"}[stage])
    assert metadata(run_dir)["status"] == "completed"
    assert_same_as_uninterrupted(run_dir, stage_runs[stage].run_dir)


def test_wandb_run_id_is_kept_across_resumes(interrupted_run):
    manifest, run_dir, _, _ = interrupted_run
    sessions = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(sessions) == 3  # one per launch, all the same W&B run
    assert {p.name.split("-", 3)[3] for p in sessions} == {f"expc-{manifest.stem[:16]}"}
