"""On a CUDA machine: the same debug experiment on one GPU, NCCL and bf16 (the lib sets the
`bf16` section where the hardware profile has it), through `expc run`. Skipped without CUDA
(conftest.py). The MFU of a ~350M GPT is measured by bench/gpu_mfu.py, not here."""
from __future__ import annotations

import json

import pytest

from .conftest import build_spec, expc_run, make_project, train_records

GPU_STEPS = 40


@pytest.mark.gpu
def test_a_tiny_bf16_run_on_one_gpu_completes_and_learns(tmp_path):
    project = make_project(tmp_path / "gpu")
    manifest = build_spec(project, "gpu", stage=1, max_steps=GPU_STEPS, hardware="h100_80gb_x1")
    data = json.loads(manifest.read_text())
    assert data["hardware"]["backend"] == "nccl" and data["deepspeed"]["bf16"]["enabled"] is True
    result = expc_run(manifest, cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    d12 = manifest.stem[:12]
    assert result.stdout.splitlines()[0] == f"training {d12}: 1 processes, {GPU_STEPS} steps: runs/{manifest.stem}/"
    run_dir = project / "runs" / manifest.stem
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "completed" and meta["accelerator"] == "cuda" and meta["world_size"] == 1
    evals = [r["val_loss"] for r in train_records(run_dir) if "val_loss" in r]
    assert evals[-1] < evals[0] - 1.0
    assert all(r["grad_norm"] > 0 for r in train_records(run_dir) if "loss" in r)
