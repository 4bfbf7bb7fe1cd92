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


def test_text_source_reads_a_file_or_a_folder_bytewise(tmp_path):
    from trainer.data import load_corpus

    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"a" * 300)
    (folder / "sub" / "b.md").write_text("b\u00e9" * 100, encoding="utf-8")  # any name, UTF-8 bytes
    (folder / ".hidden").write_bytes(b"h" * 500)  # not corpus text
    text = lambda path, seed=1: load_corpus({"source": "text", "path": str(path), "val_fraction": 0.25},  # noqa: E731
                                            seed, 256, 16)
    corpus = text(folder)
    assert corpus.is_text and corpus.description.startswith("text: 2 files, 600 bytes, sha256 ")
    assert (len(corpus.train[0]), len(corpus.val[0])) == (450, 150)
    blob = np.concatenate([corpus.train[0], corpus.val[0]]).tobytes()
    assert sorted(blob) == sorted(b"a" * 300 + ("b\u00e9" * 100).encode())
    assert blob in (b"a" * 300 + ("b\u00e9" * 100).encode(), ("b\u00e9" * 100).encode() + b"a" * 300)
    orders = {text(folder, seed).train[0].tobytes()[:1] for seed in range(8)}
    assert orders == {b"a", b"b"}  # the file order is shuffled by the seed
    single = text(folder / "a.txt")
    assert single.description.startswith("text: 1 files, 300 bytes") and len(single.train[0]) == 225
    with pytest.raises(ExpcError) as err:
        load_corpus({"source": "text", "path": str(folder), "val_fraction": 0.25}, 1, 128, 16)
    assert str(err.value) == "$.model.vocab_size: byte-level data needs vocab_size >= 256, the model has 128"
    with pytest.raises(ExpcError) as err:
        load_corpus({"source": "text", "path": str(folder / "a.txt"), "val_fraction": 0.25}, 1, 256, 128)
    assert str(err.value) == ("$.data: the validation split (75 tokens in its largest shard) is shorter than "
                              "one block of 129 tokens")


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_token_shards_of_either_width_are_read_as_written(tmp_path, dtype):
    from trainer.data import TRAIN, get_batch, load_corpus

    big = 70_000 if dtype == "uint32" else 50_000  # ids past 65535 need uint32
    tokens = (np.arange(2000) * 37 % big).astype(dtype)
    tokens.tofile(tmp_path / "shard.bin")
    corpus = load_corpus({"source": "tokens", "path": str(tmp_path / "shard.bin"), "dtype": dtype,
                          "val_fraction": 0.1}, 1, big, 16)
    assert corpus.description == f"tokens: 1 shards of {dtype}, 2000 tokens" and not corpus.is_text
    assert np.array_equal(corpus.train[0], tokens[:1800]) and np.array_equal(corpus.val[0], tokens[1800:])
    x, y = get_batch(corpus.train, TRAIN, 1, 0, 0, 0, batch_size=4, block_size=16, device="cpu")
    start = int(np.flatnonzero(tokens == x[0, 0].item())[0])
    assert x[0].tolist() == tokens[start:start + 16].astype(np.int64).tolist()
    assert int(x.max()) < big


def test_a_folder_of_token_shards_holds_out_each_shards_tail(tmp_path):
    from trainer.data import TRAIN, get_batch, load_corpus

    np.full(1000, 1, dtype=np.uint16).tofile(tmp_path / "000.bin")
    np.full(3000, 2, dtype=np.uint16).tofile(tmp_path / "001.bin")
    (tmp_path / "notes.txt").write_text("not a shard")
    corpus = load_corpus({"source": "tokens", "path": str(tmp_path), "dtype": "uint16", "val_fraction": 0.1},
                         1, 50304, 16)
    assert corpus.description == "tokens: 2 shards of uint16, 4000 tokens"
    assert [len(a) for a in corpus.train] == [900, 2700] and [len(a) for a in corpus.val] == [100, 300]
    assert [int(a[0]) for a in corpus.train] == [1, 2]
    # Windows are drawn from every shard, in proportion to its usable length.
    rows = np.concatenate([get_batch(corpus.train, TRAIN, 1, step, 0, 0, 8, 16, "cpu")[0][:, 0].numpy()
                           for step in range(50)])
    share = (rows == 2).mean()
    assert set(rows.tolist()) == {1, 2} and 0.65 < share < 0.85  # 2683 of 3566 usable: 0.75


def test_gpt_forward_and_initial_loss():
    import torch

    from trainer.models import build_model

    config = {"arch": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "vocab_size": 256,
              "dropout": 0.0, "bias": False}
    torch.manual_seed(0)
    model = build_model({"model": config})
    idx = torch.randint(0, 256, (3, 16))
    logits, loss = model(idx, torch.randint(0, 256, (3, 16)))
    assert logits.shape == (3, 16, 256)
    assert abs(loss.item() - math.log(256)) < 0.1  # about uniform before training
    assert model.generate(idx[:, :2], 5, torch.Generator().manual_seed(0)).shape == (3, 7)


def test_an_unknown_arch_is_named_with_the_closest_one():
    from trainer.models import build_model

    with pytest.raises(ExpcError) as err:
        build_model({"model": {"arch": "gtp"}})
    assert str(err.value) == ('$.model.arch: unknown model arch \'gtp\' (did you mean "gpt"?); this installation '
                              'has: gpt, hf_causal_lm')


def test_the_gpt_parameter_formula_counts_the_real_module():
    # the compile side's count (estimates, MFU) against the torch module's own parameters
    from expc.archs import arch_of
    from trainer.models import GPT

    for bias in (False, True):
        config = {"arch": "gpt", "n_layer": 3, "n_head": 2, "n_embd": 32, "block_size": 16, "vocab_size": 256,
                  "dropout": 0.0, "bias": bias}
        assert arch_of(config).parameters(config) == sum(p.numel() for p in GPT(config).parameters())
        # and tensor by tensor (ZeRO-3's persistence threshold reads the sizes)
        assert _sizes(arch_of(config).tensors(config)) == sorted(p.numel() for p in GPT(config).parameters())


def _sizes(tensors):
    return sorted(elements for elements, times in tensors for _ in range(times))


def test_the_hf_parameter_formula_counts_the_real_models(tmp_path):
    # Llama (untied, no bias) and Qwen2 (tied, q/k/v bias) shapes, built by transformers itself
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from expc.archs import arch_of
    from expc.compile.pin import frozen_config

    shapes = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96, vocab_size=300, max_position_embeddings=128)
    for config_class, model_class, tied in ((LlamaConfig, LlamaForCausalLM, False), (Qwen2Config, Qwen2ForCausalLM, True)):
        config = config_class(**shapes, tie_word_embeddings=tied)
        model = model_class(config)
        section = {"arch": "hf_causal_lm", "config": frozen_config(config.to_dict())}
        assert arch_of(section).parameters(section) == sum(p.numel() for p in model.parameters()), config_class
        assert _sizes(arch_of(section).tensors(section)) == sorted(p.numel() for p in model.parameters()), config_class


def plan(manifest, **options):
    from expc.launch.commands import LaunchOptions, plan_launch

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


def test_plain_progress_lines_show_loss_tokens_per_second_and_eta(capsys):
    from expc.launch.run import Progress

    with Progress("0123456789abcdef", 60, 0) as progress:
        assert progress.bar is None  # not a terminal here
        progress.update([{"step": 0, "val_loss": 5.54321, "elapsed": 0.8},
                         {"step": 10, "loss": 3.25, "lr": 0.01, "grad_norm": 1.0, "tokens_per_s": 1234.4,
                          "mfu": 0.1, "elapsed": 12.5},
                         {"step": 60, "loss": 1.5, "lr": 0.0, "grad_norm": 1.0, "tokens_per_s": 999.6,
                          "mfu": 0.1, "elapsed": 75.0}])
    assert capsys.readouterr().err.splitlines() == [
        "step 0/60 validation loss 5.5432",
        "step 10/60 loss 3.2500 (1234 tokens/s, eta 0:01:02)",  # 12.5 s per 10 steps, 50 to go
        "step 60/60 loss 1.5000 (1000 tokens/s, eta 0:00:00)"]


def test_eta_uses_the_attempts_pace_across_resumes():
    from expc.launch.run import eta

    assert eta({"step": 40, "elapsed": 3600.0}, 50) == "0:15:00"
    assert eta({"step": 1, "elapsed": 4000.0}, 3) == "2:13:20"
    assert eta({"step": 0, "elapsed": 0.5}, 3) == "?"


def test_a_failure_of_another_rank_than_0_is_recorded(tmp_path):
    """Rank 0 records its own failures; when rank 1 fails alone metadata.json still says
    running, and `expc run` records it from the launcher's exit status and rank 1's log."""
    from expc.launch.commands import LaunchPlan
    from expc.project import Project
    from expc.launch.run import report
    from trainer.rundir import update_metadata

    run_dir = tmp_path / "runs" / "d"
    (run_dir / "logs").mkdir(parents=True)
    update_metadata(run_dir, status="running", step=10, end=None, error=None)
    (run_dir / "logs" / "20260101120000_rank0.log").write_text("step 10\n")
    (run_dir / "logs" / "20260101120000_rank1.log").write_text(
        "step 10\nTraceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: out of memory\n")
    plan = LaunchPlan(["deepspeed"], {}, run_dir, 2)
    with pytest.raises(ExpcError) as err:
        report(1, plan, run_dir, "d" * 32, None, Project(tmp_path))
    assert str(err.value).startswith("the run failed (launcher exit status 1, status failed); last lines of "
                                     "runs/d/logs/20260101120000_rank1.log:\n  step 10\n")
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "failed" and meta["end"] and meta["step"] == 10
    assert meta["error"] == ("rank 1 failed (launcher exit status 1); last lines of logs/20260101120000_rank1.log:\n"
                             "  step 10\n  Traceback (most recent call last):\n    File \"x.py\", line 1\n"
                             "  RuntimeError: out of memory")
    # A failure rank 0 recorded itself is left as it is.
    update_metadata(run_dir, status="failed", error="ExpcError: mine")
    with pytest.raises(ExpcError):
        report(1, plan, run_dir, "d" * 32, None, Project(tmp_path))
    assert json.loads((run_dir / "metadata.json").read_text())["error"] == "ExpcError: mine"
