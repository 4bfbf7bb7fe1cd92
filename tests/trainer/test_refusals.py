"""What `expc run` and the trainer refuse, and how a failed run is reported: exact messages."""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from .conftest import BIN, PORTS, ROOT, STAGE_STEPS, build_spec, expc, expc_run, finish, make_project, start


def tampered_copy(tmp_path, original):
    """The manifest under its own name, one number changed: what a hand edit looks like."""
    project = make_project(tmp_path / "tampered")
    (project / "manifests").mkdir()
    target = project / "manifests" / original.name
    text = original.read_text()
    assert f'"max_steps": {STAGE_STEPS}' in text
    target.write_text(text.replace(f'"max_steps": {STAGE_STEPS}', f'"max_steps": {STAGE_STEPS + 1}'))
    from expc.compile.canonical import digest, parse_manifest_text

    return project, target, digest(parse_manifest_text(target.read_text(), "x"))


def test_expc_run_refuses_a_tampered_manifest(tmp_path, stage_runs):
    project, target, actual = tampered_copy(tmp_path, stage_runs[0].manifest)
    result = expc("run", f"manifests/{target.name}", cwd=project)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: manifests/{target.name}: content does not match its name: the file hashes to {actual[:12]}, "
        f"its name says {target.stem[:12]}. A manifest is never edited by hand: change the spec and rebuild.\n")
    assert not (project / "runs").exists()


def test_the_trainer_refuses_a_tampered_manifest(tmp_path, stage_runs):
    project, target, actual = tampered_copy(tmp_path, stage_runs[0].manifest)
    command = [BIN / "deepspeed", "--num_gpus", "2", "--master_port", next(PORTS), "--module", "trainer",
               f"manifests/{target.name}"]
    result = finish(start(command, project))
    assert result.returncode != 0
    message = (f"error: manifests/{target.name}: content does not match its name: the file hashes to "
               f"{actual[:12]}, its name says {target.stem[:12]}.")
    assert (result.stdout + result.stderr).count(message) == 2  # both ranks, before joining anything
    assert not (project / "runs").exists()


TEXT_STEPS = 20


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """Plain-text corpora: one shorter than a block, pinned and present, so the build and `expc
    run` accept it and the ranks refuse it (the run fails); one of real text, trained, then
    trained again with `expc run --rerun`, which moves the first attempt aside."""
    project = make_project(tmp_path_factory.mktemp("text"))
    (project / "short").mkdir()
    (project / "short" / "a.txt").write_text("too short\n")
    short = build_spec(project, "short", max_steps=TEXT_STEPS, data="{ source: 'text', path: 'short', val_fraction: 0.1 }")
    failed = expc_run(short, cwd=project)
    failed_meta = json.loads((project / "runs" / short.stem / "metadata.json").read_text())
    (project / "corpus" / "docs").mkdir(parents=True)
    for page in ("trainer.md", "runs.md"):  # about 20 kB of English and code
        shutil.copy(ROOT / "docs" / page, project / "corpus" / "docs" / page)
    manifest = build_spec(project, "text", max_steps=TEXT_STEPS, sample_tokens=120,
                          data="{ source: 'text', path: 'corpus', val_fraction: 0.1 }")
    first = expc_run(manifest, cwd=project)
    assert first.returncode == 0, first.stderr[-3000:]
    rerun = expc_run(manifest, "--rerun", cwd=project)
    return project, short, failed, failed_meta, manifest, rerun


def test_a_failing_run_exits_1_with_the_failing_ranks_log(text_run):
    project, manifest, result, meta, *_ = text_run
    digest = manifest.stem
    assert result.returncode == 1, result.stderr
    first, *rest = result.stderr.splitlines()
    assert re.fullmatch(rf"error: the run failed \(launcher exit status 1, status failed\); last lines of "
                        rf"runs/{digest}/logs/\d{{14}}_rank\d\.log:", first), first
    message = ("$.data: the train split (9 tokens in its largest shard) is shorter than one block of 33 tokens")
    assert f"  error: {message}" in rest
    assert "Traceback" not in result.stderr  # a user mistake, not a bug
    assert meta["status"] == "failed" and meta["error"] == f"ExpcError: {message}"


def test_a_corpus_that_was_not_there_at_build_is_refused_before_launch(tmp_path):
    project = make_project(tmp_path / "absent")
    manifest = build_spec(project, "absent", data="{ source: 'text', path: 'corpus', val_fraction: 0.1 }")
    result = expc("run", manifest.stem[:12], cwd=project)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("error: $.data.sha256: the manifest does not pin corpus: it was not there when the "
                             "manifest was built. Build the spec where the data is (the build adds data.sha256), "
                             "then run that manifest\n")
    assert not (project / "runs").exists()


def test_dry_run_prints_the_exact_command(stage_runs):
    run = stage_runs[1]
    project = run.manifest.parent.parent
    result = expc("run", run.manifest.stem[:10], "--dry-run", "--master-port", "29599", cwd=project)
    assert result.returncode == 0
    assert result.stdout == (
        f"OMP_NUM_THREADS=1 DS_ACCELERATOR=cpu {BIN}/deepspeed --num_gpus 2 --master_port 29599 "
        f"--enable_each_rank_log {run.run_dir}/logs --module trainer {run.manifest} --run-dir {run.run_dir}\n")


def test_rerun_keeps_the_previous_attempt_and_a_text_run_ends_with_a_sample(text_run):
    """--rerun: the old files move to attempts/1/, a fresh attempt trains (its own W&B run)."""
    project, _, _, _, manifest, result = text_run
    assert result.returncode == 0, result.stderr[-3000:]
    d, d12 = manifest.stem, manifest.stem[:12]
    assert result.stdout.splitlines()[:2] == [
        f"{d12}: previous attempt moved to runs/{d}/attempts/1/",
        f"training {d12}: 2 processes, {TEXT_STEPS} steps: runs/{d}/"]
    run_dir = project / "runs" / d
    assert json.loads((run_dir / "attempts" / "1" / "metadata.json").read_text())["status"] == "completed"
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "completed" and meta["attempt"] == 2
    assert meta["corpus"].startswith("text: 2 files, ")
    assert list((run_dir / "wandb").glob(f"offline-run-*-expc-{d[:16]}-2"))
    sample = (run_dir / "sample.txt").read_text(encoding="utf-8")
    assert sample.strip()
    assert f"sample (runs/{d}/sample.txt):\n{sample.rstrip()}\n" in result.stdout  # printed at the end


def test_several_manifests_are_all_checked_before_any_trains(stage_runs):
    first, second = stage_runs[0], stage_runs[1]
    project = first.manifest.parent.parent
    result = expc("run", first.manifest.stem[:8], second.manifest.stem[:8], "--dry-run", "--master-port", "29598",
                  cwd=project)
    assert result.returncode == 0
    assert [line.split(" --run-dir ")[1] for line in result.stdout.splitlines()] == [str(first.run_dir),
                                                                                    str(second.run_dir)]
    result = expc("run", second.manifest.stem[:8], "abcd0123", cwd=project)
    assert result.returncode == 1
    assert result.stderr == "error: no manifest in manifests/ starts with abcd0123\n"
    assert result.stdout == ""  # nothing was started, not even the first


def test_a_digest_being_run_elsewhere_is_refused(stage_runs):
    from expc.launch.run import run_lock

    run = stage_runs[0]
    before = sorted(p.name for p in run.run_dir.iterdir())
    with run_lock(run.run_dir, run.manifest.stem):  # as a concurrent `expc run` holds it
        result = expc("run", run.manifest.stem[:12], "--rerun", cwd=run.manifest.parent.parent)
    assert result.returncode == 1
    digest = run.manifest.stem
    assert result.stderr == (
        f"error: {digest[:12]} is being run by another `expc run` on this machine (process {os.getpid()}); "
        f"nothing was started. Wait for it to finish (its progress is in runs/{digest}/metrics.jsonl) or stop it, "
        "then run this again\n")
    assert sorted(p.name for p in run.run_dir.iterdir()) == before  # nothing moved aside
