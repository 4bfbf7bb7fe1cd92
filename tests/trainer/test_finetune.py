"""Fine-tuning a Hugging Face base with LoRA, through the real launcher on 2 CPU ranks: the loss
falls, the export loads with plain transformers + peft and gives the trainer's logits, ZeRO-3
loads the base partitioned, kill -9 then resume is bit-exact at ZeRO 0, 1 and 2, and a changed
pinned file stops the run before training.

The base and the rows are the committed assets (assets/tiny-llama, assets/instructions), copied
into a scratch project; ten launches in all.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import BIN, PORTS, ROOT, expc, expc_run, finish, kill_group, start, train_records, wait_for

SPEC = """\
local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage({stage}) + {{
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.hf('assets/tiny-llama'),
  adapter: expc.adapters.lora(16, 32, target_modules=['q_proj', 'v_proj', 'o_proj', 'down_proj'],
                              dropout=0.1, modules_to_save={save}),
  data: expc.data.jsonl('assets/instructions/train.jsonl', val='assets/instructions/val.jsonl',
                        template=expc.templates.plain, max_length=64, packing={packing}),
  global_batch_size:: 8,
  micro_batch_size:: 2,
  lr:: 1e-2,
  warmup_steps:: 2,
  train+: {{ max_steps: {steps}, log_interval: 5, eval_interval: 10, eval_iters: 2,
             checkpoint_interval: 10, keep_checkpoints: 2, sample_tokens: 0 }},
}}
"""
STEPS = 30


def make_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("lib", "assets"):
        shutil.copytree(ROOT / name, folder / name)
    (folder / "specs").mkdir()
    return folder


def build(project: Path, name: str, stage: int, steps: int = STEPS, save: str = "['lm_head']",
          packing: bool = False) -> Path:
    from expc.compile import build as build_specs

    spec = project / "specs" / f"{name}.jsonnet"
    spec.write_text(SPEC.format(stage=stage, steps=steps, save=save, packing=str(packing).lower()))
    (manifest,) = build_specs([spec])
    return project / "manifests" / f"{manifest.digest}.json"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The LoRA experiment at a ZeRO stage, trained once through `expc run`, per stage asked for."""
    runs = {}

    def run(stage: int):
        if stage not in runs:
            project = make_project(tmp_path_factory.mktemp(f"lora{stage}"))
            manifest = build(project, "lora", stage=stage)
            runs[stage] = manifest, project / "runs" / manifest.stem, expc_run(manifest, cwd=project)
        return runs[stage]
    return run


@pytest.fixture(scope="module")
def zero2(uninterrupted):
    return uninterrupted(2)


@pytest.fixture(scope="module")
def zero3(tmp_path_factory):
    # LoRA alone (no module saved in full), so what each rank holds after loading is the base's
    # share; and examples packed into sequences
    project = make_project(tmp_path_factory.mktemp("lora3"))
    manifest = build(project, "lora", stage=3, steps=10, save="[]", packing=True)
    return manifest, project / "runs" / manifest.stem, expc_run(manifest, cwd=project)


def validation_losses(run_dir: Path) -> list[float]:
    return [r["val_loss"] for r in train_records(run_dir) if "val_loss" in r]


def probe_logits(export: Path):
    """The export, loaded as a user would: plain transformers + peft, the base from its folder."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    config = json.loads((export / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(export.parents[2] / config["base_model_name_or_path"])
    model = PeftModel.from_pretrained(base, str(export)).eval()
    probe = load_file(str(export / "probe.safetensors"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the trainer's thread count: the same sums in the same order
    try:
        with torch.no_grad():
            ids = probe["input_ids"]
            return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits, probe["logits"]
    finally:
        torch.set_num_threads(threads)


def test_lora_at_zero2_trains_and_exports(zero2):
    manifest, run_dir, result = zero2
    assert result.returncode == 0, result.stderr[-3000:]
    losses = validation_losses(run_dir)
    assert losses[-1] < losses[0] - 1.0, losses  # from about ln(384) = 5.95
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "completed" and meta["export"] == "export"
    assert (meta["train_examples"], meta["val_examples"]) == (400, 48)
    assert meta["trainable_params"] < meta["n_params"]
    export = run_dir / "export"
    assert sorted(p.name for p in export.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "chat_template.jinja", "metadata.json",
        "probe.safetensors", "tokenizer.json", "tokenizer_config.json"]
    config = json.loads((export / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["revision"], config["r"]) == ("assets/tiny-llama", None, 16)
    info = json.loads((export / "metadata.json").read_text())
    data = json.loads(manifest.read_text())
    assert info["base"]["files"] == data["model"]["files"] and info["data"]["train"] == data["data"]["train"]
    assert (info["digest"], info["step"], info["kind"], info["train_examples"]) == (manifest.stem, STEPS, "adapter", 400)
    assert info["train_tokens"] > info["train_tokens_with_loss"] > 0


def test_the_export_gives_the_trainers_logits(zero2):
    import torch

    got, want = probe_logits(zero2[1] / "export")
    assert torch.equal(got, want)


def test_expc_export_shows_and_merges(zero2):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    manifest, run_dir, _ = zero2
    project = run_dir.parents[1]
    shown = expc("export", manifest.stem[:12], cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == f"runs/{manifest.stem}/export/: adapter of assets/tiny-llama, step {STEPS}"
    merged = expc("export", manifest.stem[:12], "--merge", cwd=project)
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.splitlines()[-1] == (f"merged: runs/{manifest.stem}/export/merged/ (base + adapter, "
                                              "loadable without peft)")
    model = AutoModelForCausalLM.from_pretrained(run_dir / "export" / "merged").eval()
    probe = load_file(str(run_dir / "export" / "probe.safetensors"))
    with torch.no_grad():
        logits = model(input_ids=probe["input_ids"]).logits
    # merged weights sum W + BA once, in another order than the adapter's forward: equal to rounding
    assert torch.allclose(logits, probe["logits"], atol=1e-4), (logits - probe["logits"]).abs().max()


def test_export_of_a_run_that_has_not_run_says_so(tmp_path):
    project = make_project(tmp_path / "unrun")
    manifest = build(project, "lora", stage=2)
    done = expc("export", manifest.stem[:12], cwd=project)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"error: {manifest.stem[:12]} has no export: it has not run\n"


def test_checkpoints_leave_the_frozen_base_out(zero2):
    import torch

    run_dir = zero2[1]
    tag = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    module = torch.load(tag / "mp_rank_00_model_states.pt", weights_only=False, map_location="cpu")["module"]
    assert module and all("lora_" in k or "modules_to_save" in k for k in module), sorted(module)[:5]


def test_zero3_loads_the_base_partitioned_and_exports(zero3):
    import torch

    manifest, run_dir, result = zero3
    assert result.returncode == 0, result.stderr[-3000:]
    held = {}
    for log in (run_dir / "logs").glob("*rank*.log"):
        found = re.search(r"holds ([\d,]+) of the base's ([\d,]+) parameter elements", log.read_text())
        if found:
            held[log.name] = [int(n.replace(",", "")) for n in found.groups()]
    assert len(held) == 2, sorted(p.name for p in (run_dir / "logs").iterdir())
    (mine0, total), (mine1, _) = held.values()
    from expc.archs import arch_of

    base = arch_of(json.loads(manifest.read_text())["model"]).parameters(json.loads(manifest.read_text())["model"])
    # the base's weights are split between the ranks, each holding half; the adapter's (made after
    # loading) are partitioned later, by deepspeed.initialize
    assert mine0 + mine1 == total == base == 123_200 and abs(mine0 - mine1) <= 0.02 * base
    got, want = probe_logits(run_dir / "export")
    assert torch.equal(got, want)
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["train_examples"] == 400 and 0 < meta["train_sequences"] < 400 / 3  # 10-16 tokens each, 64 a sequence
    assert "packed into" in meta["corpus"]


# ZeRO 2 (partitioned optimizer state and gradients) in the default suite; 0 and 1 are the same
# three launches each, so they run with the slow ones (`make test-all`).
@pytest.mark.parametrize("stage", [pytest.param(0, marks=pytest.mark.slow), pytest.param(1, marks=pytest.mark.slow), 2])
def test_kill_9_then_resume_is_bit_exact(tmp_path, uninterrupted, stage):
    from expc.compile.canonical import load_manifest
    from expc.launch.commands import LaunchOptions, plan_launch
    from trainer.rundir import latest_step

    reference_manifest, reference, done = uninterrupted(stage)
    assert done.returncode == 0, done.stderr[-3000:]
    project = make_project(tmp_path / "resume")
    manifest = build(project, "lora", stage=stage)
    assert manifest.name == reference_manifest.name  # the same experiment, so the same digest
    run_dir = project / "runs" / manifest.stem
    plan = plan_launch(load_manifest(manifest)[0], LaunchOptions(manifest.resolve(), run_dir.resolve(), BIN, next(PORTS)))
    proc = start(plan.argv, project, env=plan.env)
    wait_for(lambda: latest_step(run_dir / "checkpoints") >= 10, proc, what="the first checkpoint")
    kill_group(proc)
    assert latest_step(run_dir / "checkpoints") < STEPS
    resumed = expc_run(manifest, cwd=project)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    assert train_records(run_dir) [-4:] == train_records(reference)[-4:]
    for name in ("adapter_model.safetensors", "probe.safetensors"):
        assert (run_dir / "export" / name).read_bytes() == (reference / "export" / name).read_bytes(), name


def test_a_changed_pinned_file_stops_the_run_before_training(tmp_path):
    project = make_project(tmp_path / "changed")
    manifest = build(project, "lora", stage=2)
    weights = project / "assets" / "tiny-llama" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # one byte, same size
    run = expc("run", manifest, "--dry-run", cwd=project)
    assert run.returncode == 1 and run.stdout == ""
    assert re.fullmatch(r"error: \$\.model\.files\[\"model\.safetensors\"\]: assets/tiny-llama/model\.safetensors "
                        r"changed since the build \(sha256 [0-9a-f]{12} in the manifest, [0-9a-f]{12} now\): rebuild "
                        r"the spec to pin the new content, or restore the file\n", run.stderr), run.stderr
    # the ranks check too, before loading anything: a plain launch, bypassing expc run
    from expc.compile.canonical import load_manifest
    from expc.launch.commands import LaunchOptions, plan_launch

    run_dir = project / "runs" / manifest.stem
    plan = plan_launch(load_manifest(manifest)[0], LaunchOptions(manifest.resolve(), run_dir.resolve(), BIN, next(PORTS)))
    done = finish(start(plan.argv, project, env=plan.env))
    assert done.returncode != 0
    logs = sorted((run_dir / "logs").glob("*rank*.log"))
    assert len(logs) == 2 and all("error: $.model.files[\"model.safetensors\"]: assets/tiny-llama/model.safetensors "
                                  "changed since the build" in log.read_text() for log in logs)
    assert not (run_dir / "checkpoints").exists()
