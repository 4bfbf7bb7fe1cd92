"""`expc plan`: the breakdown, the figures with their units, sweeps, runs that do not fit (with
hints that are true when applied), --fit, and the MFU an earlier run measured."""
from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from expc import estimate
from expc.cli import cli
from expc.compile import compile_spec
from expc.project import Project

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).parent / "cases" / "plan"
# GPT 1.3B x4 in depth at ZeRO 0 on 32 H100s: 4.9B parameters at 16 bytes each do not fit 80 GiB
TOO_BIG = ["--set", "model.n_layer=96", "--set", "deepspeed.zero_optimization.stage=0"]


def run(args):
    return CliRunner().invoke(cli, args, standalone_mode=False, catch_exceptions=False)


@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # plans the repository's specs and manifests; writes nothing


@pytest.mark.parametrize("case, args", [
    ("large", ["specs/large.jsonnet"]),
    ("too_big", ["specs/large.jsonnet", *TOO_BIG, "--fit"]),
    ("qwen_lora", ["specs/qwen_lora.jsonnet"]),
    ("offload", ["specs/offload.jsonnet"]),
    # without checkpointing at micro batch 16 Qwen's 152k-token logits alone take 18.5 GiB, so
    # checkpointing does not make it fit: only the smaller micro batch is offered
    ("qwen_micro16", ["specs/qwen_lora.jsonnet", "--set", "model.gradient_checkpointing=false", "--set",
                      "deepspeed.train_micro_batch_size_per_gpu=16", "--set", "deepspeed.gradient_accumulation_steps=2"]),
])
def test_golden_plans(case, args, in_root, golden):
    golden(CASES / f"{case}.txt", run(["plan", *args]).output)


def test_a_manifest_and_its_digest_prefix_plan_like_the_spec(in_root):
    by_spec = run(["plan", "specs/large.jsonnet"]).output
    by_prefix = run(["plan", "1ea9f84f"]).output
    by_path = run(["plan", "manifests/1ea9f84f10b4ec94411e34de04cb60f3d3b7f7c88532f45fa0dcc61b1a1bfbcf.json"]).output
    # the same figures; only the label (spec or manifest file) differs
    assert by_prefix.splitlines()[1:] == by_spec.splitlines()[1:] == by_path.splitlines()[1:]
    assert by_path.splitlines()[0].startswith("manifests/1ea9f84f10b4ec94411e34de04cb60f3d3b7f7c88532f45fa0dcc61b1a1bfbcf.json  1ea9f84f10b4")


def test_json_gives_every_figure_with_its_unit(in_root):
    data = json.loads(run(["plan", "1ea9f84f", "--json"]).output)
    (plan,) = data["runs"]
    assert set(plan["memory_gib"]) >= {"parameters", "gradients", "optimizer", "activations", "buffers", "total"}
    manifest = json.loads((ROOT / "manifests" / f"{plan['digest']}.json").read_text())
    mem = estimate.memory_per_device(manifest)
    assert plan["memory_gib"]["total"] == pytest.approx(mem.total, abs=1e-6)
    assert plan["parameters"] == {"value": estimate.parameter_count(manifest["model"]), "unit": "parameters"}
    assert plan["trainable_parameters"] == plan["parameters"]  # no adapter: every weight trains
    assert plan["trainable_parameters"]["unit"] == "parameters"
    assert plan["flops_per_step"]["value"] == estimate.flops_per_token(manifest) * estimate.tokens_per_step(manifest)
    assert plan["step_seconds"]["unit"] == "s" and plan["tokens_per_second"]["unit"] == "tokens/s"
    assert plan["device_hours"] == {"value": pytest.approx(estimate.device_hours(manifest)), "unit": "h"}
    assert plan["mfu"] == {"value": 0.4, "unit": "fraction of peak", "source": "default"}
    assert plan["fits"] is True and plan["hints"] == []
    for key, value in plan.items():  # every number comes with a unit
        if isinstance(value, dict) and "value" in value:
            assert value.get("unit"), key


def test_a_sweep_has_one_row_per_member_and_the_total(in_root):
    text = run(["plan", "specs/sweep_lr.jsonnet"]).output
    table = text.split("sweep: 6 runs\n", 1)[1].splitlines()
    assert table[0].split() == ["member", "GiB/device", "fits", "step", "device-hours"]
    assert [row.split()[0] for row in table[1:]] == [
        "lr=1e-3,model=cpu", "lr=1e-3,model=debug", "lr=2e-3,model=cpu", "lr=2e-3,model=debug",
        "lr=4e-3,model=cpu", "lr=4e-3,model=debug", "total"]
    data = json.loads(run(["plan", "specs/sweep_lr.jsonnet", "--json"]).output)
    assert len(data["runs"]) == 6
    assert data["total"]["device_hours"]["value"] == pytest.approx(sum(r["device_hours"]["value"] for r in data["runs"]))
    assert data["total"]["fit"] == 6


def test_a_run_that_does_not_fit_is_planned_and_its_hints_are_true(in_root):
    data = json.loads(run(["plan", "specs/large.jsonnet", *TOO_BIG, "--json"]).output)
    (plan,) = data["runs"]
    assert plan["fits"] is False and plan["memory_gib"]["total"] > 80
    assert plan["hints"], "a run this size fits at a higher ZeRO stage"
    for hint in plan["hints"]:
        assert hint["memory_gib"]["total"] <= 80
        # applied to the spec as printed, the build (with its fit check) accepts it
        sets = [s for flag in hint["set"] for s in ("--set", flag)]
        (manifest,) = compile_spec(ROOT / "specs" / "large.jsonnet", sets=[*TOO_BIG[1::2], *sets[1::2]])
        assert estimate.memory_per_device(manifest.data).total == pytest.approx(hint["memory_gib"]["total"], abs=1e-6)
    # `expc build` refuses the same run, offering the same changes
    result = CliRunner().invoke(cli, ["build", "specs/large.jsonnet", *TOO_BIG])
    assert result.exit_code == 1
    assert "the run does not fit in device memory" in str(result.exception)
    assert all(h["change"] in str(result.exception) for h in plan["hints"])


# GPT 77.7B (96 blocks of width 8192) at ZeRO 3 on 16 H100s: offload or twice the nodes fit
OFFLOAD = ["--set", "model.n_embd=8192", "--set", "model.n_head=64", "--set", "model.n_layer=96", "--set",
           "hardware.nodes=2", "--set", "deepspeed.train_micro_batch_size_per_gpu=1", "--set",
           "deepspeed.gradient_accumulation_steps=64"]


def test_the_printed_set_flags_apply_as_they_are_shown(in_root, golden):
    text = run(["plan", "specs/large.jsonnet", *OFFLOAD]).output
    golden(CASES / "offload_hint.txt", text)
    flags = [line.strip() for line in text.splitlines() if line.strip().startswith("--set ")]
    assert len(flags) == 2 and "offload_optimizer" in flags[1]
    for line in flags:
        words = shlex.split(line)  # as a shell passes them (the JSON value is quoted)
        (manifest,) = compile_spec(ROOT / "specs" / "large.jsonnet", sets=[*OFFLOAD[1::2], *words[1::2]])
        assert estimate.memory_per_device(manifest.data).total <= 80
    offloaded = estimate.memory_per_device(manifest.data)
    assert offloaded.optimizer == 0 and offloaded.host_per_node == pytest.approx(8 * offloaded.host)


def test_fit_finds_the_largest_micro_batch_keeping_the_global_batch(in_root):
    data = json.loads(run(["plan", "specs/large.jsonnet", "--set", "model.n_layer=48", "--fit", "--json"]).output)
    (plan,) = data["runs"]
    best = plan["largest_micro_batch"]
    micro = int(best["set"][0].split("=")[1])
    accumulation = int(best["set"][1].split("=")[1])
    assert micro * accumulation * 32 == 1024  # the global batch
    assert best["memory_gib"]["total"] <= 80
    # the next larger micro batch (a divisor of 32 sequences per device) does not fit
    larger = [m for m in range(micro + 1, 33) if 32 % m == 0]
    if larger:
        (over,) = compile_spec(ROOT / "specs" / "large.jsonnet", fit_check=False, sets=[
            "model.n_layer=48", f"deepspeed.train_micro_batch_size_per_gpu={larger[0]}",
            f"deepspeed.gradient_accumulation_steps={32 // larger[0]}"])
        assert estimate.memory_per_device(over.data).total > 80


def test_the_mfu_of_an_earlier_run_of_the_same_model_and_hardware(tmp_path):
    for folder in ("lib", "specs", "manifests"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    manifest = json.loads((ROOT / "manifests" / "b780cc207e42784b5250ab71d84826488874fe1dd6cb64100e57df00e6198fe7.json").read_text())
    # a run of the same model and hardware profile (another seed: another digest) left these lines
    other = {**manifest, "seed": 99}
    run_dir = tmp_path / "runs" / ("e" * 64)
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps(other))
    (run_dir / "metadata.json").write_text(json.dumps({"status": "completed", "end": "2026-11-30T10:00:00+00:00"}))
    lines = [{"step": 0, "val_loss": 5.3}, {"step": 10, "loss": 4.0, "mfu": 0.9},  # the first: start-up
             {"step": 20, "loss": 3.5, "mfu": 0.10}, {"step": 30, "loss": 3.2, "mfu": 0.12},
             {"step": 40, "loss": 3.0, "mfu": 0.14}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    from expc.review.plan import plan_manifest

    plan = plan_manifest("tiny", "b780cc20", manifest, Project(tmp_path))
    assert (plan.mfu.value, plan.mfu.source) == (0.12, "measured by run eeeeeeeeeeee (median of 3 log line(s))")
    assert plan.figures()["step_seconds"] == pytest.approx(estimate.step_seconds(manifest, 0.12))
    # another model: the default
    bigger = {**manifest, "model": {**manifest["model"], "n_layer": 8}}
    assert plan_manifest("x", "x", bigger, Project(tmp_path)).mfu.source == "default"


def test_set_on_a_manifest_is_refused(in_root):
    result = CliRunner().invoke(cli, ["plan", "1ea9f84f", "--set", "seed=1"])
    assert result.exit_code == 1
    assert str(result.exception) == "--tla, --set and --sweep apply to a spec; a manifest is planned as it is"


def test_the_doc_shows_the_real_output(in_root):
    command = "expc plan specs/large.jsonnet"
    shown = (ROOT / "docs" / "plan.md").read_text().split(f"    $ {command}\n", 1)[1]
    output = run(command.split()[1:]).output
    assert shown.startswith("".join(f"    {line}\n" for line in output.splitlines())), \
        "docs/plan.md: paste the command's current output"


@pytest.mark.parametrize("stage, paper_gb", [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_expc_plan_gives_the_zero_papers_model_states(project, monkeypatch, stage, paper_gb):
    # baseline, P_os, P_os+g and P_os+g+p of the paper's Figure 1, in its GB (10^9 bytes)
    shutil.copy(CASES / "zero_paper_7_5b.jsonnet", project / "specs")
    monkeypatch.chdir(project)
    data = json.loads(run(["plan", "specs/zero_paper_7_5b.jsonnet", "--tla", f"stage={stage}", "--json"]).output)
    (plan,) = data["runs"]
    assert plan["parameters"]["value"] == pytest.approx(7.5e9, rel=1e-5) and plan["world_size"]["value"] == 64
    memory = plan["memory_gib"]
    states = (memory["parameters"] + memory["gradients"] + memory["optimizer"]) * 2**30 / 1e9
    assert round(states, 1) == paper_gb


def test_a_missing_spec_or_manifest_is_one_located_error(in_root, capsys):
    from expc.cli import main

    for args, message in [(["plan", "specs/nope.jsonnet"], "error: no such spec: specs/nope.jsonnet\n"),
                          (["plan", "ffff0000"], "error: no manifest in manifests/ starts with ffff0000\n")]:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 1
        captured = capsys.readouterr()
        assert (captured.out, captured.err) == ("", message)
