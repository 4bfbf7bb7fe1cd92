"""The trainer's parts without a launch: data determinism, the model registry, MFU arithmetic,
and the launch plan (a pure function of the manifest and the options)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from expc.errors import ExpcError

ROOT = Path(__file__).resolve().parents[2]


def tiny_manifest() -> dict:
    from expc.compile import compile_spec

    (manifest,) = compile_spec(ROOT / "specs" / "tiny.jsonnet")
    return manifest.data


def test_batches_are_a_pure_function_of_seed_step_rank_and_micro():
    from trainer.data import TRAIN, VAL, get_batch, synthetic

    corpus = synthetic(seed=1, vocab_size=256, val_fraction=0.1)
    batch = lambda *key: get_batch(corpus.train, *key, batch_size=4, block_size=16, device="cpu")  # noqa: E731
    x, y = batch(TRAIN, 1, 7, 0, 0)
    again_x, again_y = batch(TRAIN, 1, 7, 0, 0)
    assert x.equal(again_x) and y.equal(again_y)
    assert x.shape == (4, 16) and x.dtype.is_floating_point is False
    assert x[:, 1:].equal(y[:, :-1])  # targets are the inputs shifted by one
    for other in [(TRAIN, 1, 8, 0, 0), (TRAIN, 1, 7, 1, 0), (TRAIN, 1, 7, 0, 1), (VAL, 1, 7, 0, 0), (TRAIN, 2, 7, 0, 0)]:
        assert not batch(*other)[0].equal(x), other


def test_synthetic_data_is_learnable_and_seeded():
    from trainer.data import synthetic

    a, b = synthetic(1, 256, 0.1), synthetic(1, 256, 0.1)
    assert np.array_equal(a.train[0], b.train[0]) and not np.array_equal(a.train[0], synthetic(2, 256, 0.1).train[0])
    tokens = a.train[0]
    follows = {}
    for prev, nxt in zip(tokens[:-1], tokens[1:]):
        follows.setdefault(int(prev), []).append(int(nxt))
    # Most tokens follow from the previous one: the best bigram guess is right ~90% of the time.
    right = sum(max(np.bincount(v)) for v in follows.values())
    assert right / (len(tokens) - 1) > 0.85


def test_stdlib_corpus_is_deterministic_and_bounded():
    from trainer.data import load_corpus

    data = {"source": "stdlib", "max_files": 20, "val_fraction": 0.1}
    a, b = load_corpus(data, 1337, 256, 64), load_corpus(data, 1337, 256, 64)
    assert a.description == b.description and a.description.startswith("stdlib: 20 files, ")
    assert a.is_text and np.array_equal(a.val[0], b.val[0])
    assert load_corpus(data, 1, 256, 64).description.split("sha256")[1] != a.description.split("sha256")[1]


def test_token_shards_use_train_and_val_bin(tmp_path):
    from trainer.data import load_corpus

    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.arange(200, dtype=np.uint16).tofile(tmp_path / "val.bin")
    corpus = load_corpus({"source": "tokens", "path": str(tmp_path), "dtype": "uint16", "val_fraction": 0.05},
                         1, 50304, 16)
    assert (len(corpus.train[0]), len(corpus.val[0])) == (1000, 200)
    with pytest.raises(ExpcError) as err:
        load_corpus({"source": "tokens", "path": str(tmp_path / "none"), "dtype": "uint16", "val_fraction": 0.05},
                    1, 50304, 16)
    assert str(err.value) == f"$.data.path: no .bin token shards at {tmp_path / 'none'}"


def test_gpt_forward_and_initial_loss():
    import torch

    from trainer.model import build_model

    config = {"arch": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "vocab_size": 256,
              "dropout": 0.0, "bias": False}
    torch.manual_seed(0)
    model = build_model(config)
    idx = torch.randint(0, 256, (3, 16))
    logits, loss = model(idx, torch.randint(0, 256, (3, 16)))
    assert logits.shape == (3, 16, 256)
    assert abs(loss.item() - math.log(256)) < 0.1  # about uniform before training
    assert model.generate(idx[:, :2], 5, torch.Generator().manual_seed(0)).shape == (3, 7)


def test_the_registry_names_the_arch_and_takes_new_ones():
    import torch

    from trainer.model import ARCHS, build_model, register

    with pytest.raises(ExpcError) as err:
        build_model({"arch": "gtp"})
    assert str(err.value) == '$.model.arch: unknown model arch "gtp" (did you mean "gpt"?); the trainer has: gpt'

    @register("linear_test")
    def build_linear(config):
        return torch.nn.Linear(config["n_embd"], config["n_embd"])

    try:
        assert isinstance(build_model({"arch": "linear_test", "n_embd": 4}), torch.nn.Linear)
    finally:
        del ARCHS["linear_test"]


def test_flops_per_token_counts_matmuls_and_attention():
    from trainer.model import GPT, flops_per_token

    config = {"arch": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "vocab_size": 256,
              "dropout": 0.0, "bias": False}
    n = sum(p.numel() for p in GPT(config).parameters())
    assert flops_per_token(config, n) == 6 * (n - 16 * 32) + 12 * 2 * 32 * 16


def plan(manifest, **options):
    from expc.launch import LaunchOptions, plan_launch

    return plan_launch(manifest, LaunchOptions(Path("/p/manifests/m.json"), Path("/p/runs/d"), Path("/venv/bin"),
                                               **options))


def test_launch_plan_for_the_tiny_manifest():
    launch = plan(tiny_manifest(), master_port=29512)
    assert launch.argv == ["/venv/bin/deepspeed", "--num_gpus", "2", "--master_port", "29512",
                           "--enable_each_rank_log", "/p/runs/d/logs", "--module", "trainer",
                           "/p/manifests/m.json", "--run-dir", "/p/runs/d"]
    assert launch.env == {"OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    assert launch.world_size == 2
    assert launch.describe() == "OMP_NUM_THREADS=1 DS_ACCELERATOR=cpu " + " ".join(launch.argv) + "\n"


def test_launch_plan_logs_wandb_offline_without_a_key_and_adds_launch_env_last():
    manifest = tiny_manifest()
    manifest["logging"]["wandb"]["mode"] = "online"
    manifest["launch"]["env"] = {"OMP_NUM_THREADS": "3", "NCCL_DEBUG": "INFO"}
    assert plan(manifest).env == {"OMP_NUM_THREADS": "3", "DS_ACCELERATOR": "cpu", "WANDB_MODE": "offline",
                                  "NCCL_DEBUG": "INFO"}
    assert "WANDB_MODE" not in plan(manifest, wandb_key=True).env
    assert plan(manifest, operator_env={"WANDB_MODE": "disabled"}).env["WANDB_MODE"] == "disabled"
    assert plan(manifest, operator_env={"WANDB_MODE": "a b"}).describe().startswith(
        "OMP_NUM_THREADS=3 DS_ACCELERATOR=cpu WANDB_MODE='a b' ")


def test_wandb_run_id_comes_from_the_digest():
    from trainer.tracking import wandb_run_id

    assert wandb_run_id("1e69703c1a0b64f05492d04f6167cd69", 1) == "expc-1e69703c1a0b64f0"
    assert wandb_run_id("1e69703c1a0b64f05492d04f6167cd69", 3) == "expc-1e69703c1a0b64f0-3"


def test_expc_run_plans_without_importing_torch_or_deepspeed(tmp_path):
    """`expc run` itself stays light: only the ranks import torch (start-up is measured in bench/)."""
    import subprocess
    import sys

    probe = ("import sys\nfrom expc.cli import main\ntry:\n    main(['run', sys.argv[1], '--dry-run'])\n"
             "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'deepspeed', 'wandb') if m in sys.modules))\n")
    manifest = sorted(p for p in (ROOT / "manifests").glob("*.json") if p.name != "index.json")[0]
    out = subprocess.run([sys.executable, "-c", probe, str(manifest)], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.splitlines()[-1] == "[]"
