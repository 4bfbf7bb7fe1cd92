"""The same experiment at ZeRO stages 0-3 through `expc run`: each completes, the losses agree,
and the run directory holds what docs/runs.md promises."""
from __future__ import annotations

import json
import math

import pytest

from .conftest import STAGE_STEPS, expc_run, final_weights, train_records


def test_every_stage_completes_with_the_documented_output(stage_runs):
    for run in stage_runs.values():
        digest, shown = run.manifest.stem, f"runs/{run.manifest.stem}"
        assert run.result.returncode == 0, run.result.stderr[-3000:]
        lines = run.result.stdout.splitlines()
        assert lines[0] == f"training {digest[:12]}: 2 processes, {STAGE_STEPS} steps: {shown}/"
        assert lines[1].startswith(f"{digest[:12]} completed: step {STAGE_STEPS}, validation loss ")
        assert lines[2] == f"results in {shown}/ (metrics.jsonl, checkpoints/, logs/, wandb/)"
        # Without a terminal the progress is one plain line per logged step, on stderr.
        assert f"step {STAGE_STEPS}/{STAGE_STEPS} loss " in run.result.stderr


def test_losses_agree_across_stages(stage_runs):
    records = {stage: train_records(run.run_dir) for stage, run in stage_runs.items()}
    # Stages 0 and 1 reduce full gradients the same way: identical to the bit.
    assert records[0] == records[1]
    # Stage 2 reduce-scatters gradient buckets and stage 3 gathers partitioned parameters: the
    # sums run in another order, so the last bits differ (and the tied embedding makes it show).
    for stage in (2, 3):
        for a, b in zip(records[0], records[stage], strict=True):
            assert a.keys() == b.keys() and a["step"] == b["step"]
            for key in ("loss", "val_loss", "grad_norm", "lr"):
                if key in a:
                    assert math.isclose(a[key], b[key], rel_tol=1e-4), (stage, a, b)


def test_the_model_learns(stage_runs):
    evals = [r["val_loss"] for r in train_records(stage_runs[2].run_dir) if "val_loss" in r]
    assert evals[0] > math.log(256) - 0.2  # about uniform over 256 tokens at step 0
    assert evals[-1] < evals[0] - 1.0


def test_final_weights_agree_for_stages_0_to_2(stage_runs):
    weights = [final_weights(stage_runs[s].run_dir) for s in (0, 1, 2)]
    assert weights[0].keys() == weights[1].keys() == weights[2].keys()
    for name in weights[0]:
        assert weights[0][name].equal(weights[1][name]), name
        assert (weights[0][name] - weights[2][name]).abs().max() < 1e-5, name


def test_run_directory(stage_runs):
    run = stage_runs[2]
    manifest = json.loads(run.manifest.read_text())
    assert (run.run_dir / "manifest.json").read_bytes() == run.manifest.read_bytes()
    assert json.loads((run.run_dir / "ds_config.json").read_text()) == manifest["deepspeed"]
    meta = json.loads((run.run_dir / "metadata.json").read_text())
    assert meta["status"] == "completed" and meta["step"] == STAGE_STEPS and meta["digest"] == run.manifest.stem
    assert meta["world_size"] == 2 and meta["hosts"] and meta["end"] >= meta["start"]
    # expc's own commit only when it runs from a git checkout, as here
    assert set(meta["versions"]) - {"expc_commit"} == {"python", "torch", "deepspeed", "expc"}
    assert meta["git"] == {"commit": None, "dirty": False, "changed": []}  # the project is no repository
    records = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == list(range(5, STAGE_STEPS + 1, 5))
    assert set(train[0]) == {"step", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "elapsed"}
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 for r in train)
    assert [r["step"] for r in records if "val_loss" in r] == [0, STAGE_STEPS // 2, STAGE_STEPS]
    # keep_checkpoints: 2 of the six saved
    tags = sorted(p.name for p in (run.run_dir / "checkpoints").glob("step_*"))
    assert tags == [f"step_{STAGE_STEPS - 10:08d}", f"step_{STAGE_STEPS:08d}"]
    for tag in tags:
        assert sorted(p.name for p in (run.run_dir / "checkpoints" / tag).glob("rng_rank*.pt")) == \
            ["rng_rank00000.pt", "rng_rank00001.pt"]
    logs = sorted(p.name.rsplit("_", 1)[1] for p in (run.run_dir / "logs").glob("*_rank*.log"))
    assert logs == ["rank0.log", "rank1.log"]


def test_a_completed_digest_is_not_retrained(stage_runs):
    run = stage_runs[0]
    before = {p: p.stat().st_mtime_ns for p in run.run_dir.rglob("*") if p.is_file()}
    again = expc_run(run.manifest.stem[:8], cwd=run.manifest.parent.parent)
    assert again.returncode == 0
    assert again.stdout == (
        f"{run.manifest.stem[:12]} is already completed (step {STAGE_STEPS}): results in runs/{run.manifest.stem}/\n"
        "nothing to do; `expc run --rerun` trains it again as a fresh attempt\n")
    after = {p: p.stat().st_mtime_ns for p in run.run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == {p: t for p, t in before.items() if p.name != ".lock"}


@pytest.mark.parametrize("stage", [2])
def test_wandb_logged_offline_with_the_manifest_as_config(stage_runs, stage):
    from .wandb_records import read_records

    run = stage_runs[stage]
    digest = run.manifest.stem
    (offline,) = (run.run_dir / "wandb").glob(f"offline-run-*-expc-{digest[:16]}")
    (records_file,) = offline.glob("*.wandb")
    records = read_records(records_file)
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run_record.run_id == f"expc-{digest[:16]}"
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update if item.key != "_wandb"}
    assert config == json.loads(run.manifest.read_text())
    history = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    logged = {item.key or "/".join(item.nested_key) for h in history for item in h.item}
    assert {"loss", "val_loss", "lr", "grad_norm"} <= logged


def test_deepspeed_monitors_get_the_losses(stage_runs):
    """Stage 1's deepspeed section enables DeepSpeed's own CSV and TensorBoard monitors (passed
    verbatim); both hold the losses of metrics.jsonl, at DeepSpeed's x-axis (samples)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = stage_runs[1]
    project = run.manifest.parent.parent
    train = [r for r in train_records(run.run_dir) if "loss" in r]
    folder = project / "monitor" / "stage1"
    files = sorted(p.name for p in folder.glob("*.csv"))
    assert files == ["Train_Samples_loss.csv", "Train_Samples_lr.csv", "Train_Samples_val_loss.csv"]
    rows = (folder / "Train_Samples_loss.csv").read_text().splitlines()
    assert len(rows) == 1 + STAGE_STEPS // 5  # a header, then one row per logged step

    (events,) = (project / "tensorboard" / "stage1").glob("events.out.tfevents.*")
    board = EventAccumulator(str(events))
    board.Reload()
    assert {"Train/Samples/loss", "Train/Samples/val_loss", "Train/Samples/lr"} <= set(board.Tags()["scalars"])
    logged = board.Scalars("Train/Samples/loss")
    assert [e.step for e in logged] == [r["step"] * 8 for r in train]  # 8 samples per step
    for event, record in zip(logged, train):
        assert math.isclose(event.value, record["loss"], rel_tol=1e-6)  # stored as float32
