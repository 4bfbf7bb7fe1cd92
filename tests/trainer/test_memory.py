"""The memory estimate against what DeepSpeed really holds: one launch of 2 CPU ranks builds an
engine at each ZeRO stage in fp32 and in bf16 in turn (tests/trainer/memory_census.py) and
counts, tensor by tensor, the bytes of parameters, gradients, optimizer state, reduce buckets and
the activations the forward saved on each rank; each must be within 5% of
expc.estimate.memory_per_device. A LoRA fine-tune of the committed tiny Llama rides along: its
model states (the adapter's weights beside the frozen base, gradients and Adam's state for the
adapter alone) too. The figures are the
table in docs/plan.md."""
from __future__ import annotations

import json
import shutil

import pytest

from expc.estimate import GIB, memory_per_device

from .conftest import BIN, ROOT, finish, make_project, start

# A GPT of many small tensors (32 blocks of width 64, 1.6M parameters), so that a tensor cut by a
# partition boundary (ZeRO 2 keeps its whole gradient on one rank) stays a small share. A
# persistence threshold of 10,000 elements partitions the big matrices at stage 3 and keeps the
# small ones whole on every rank; a 2M-element reduce bucket keeps the buffers small on CPU.
# bf16 runs on these CPUs too (the profile says fp32 only because that is what trains fastest).
SPEC = """\
local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage({stage}) + {{
  hardware: expc.hardware.cpu_laptop {{ bf16: {bf16} }},
  model: expc.models.gpt(32, 4, 64, block_size=64, vocab_size=256),
  data: {{ source: 'synthetic', val_fraction: 0.1 }},
  global_batch_size:: 8,
  micro_batch_size:: 2,
  lr:: 1e-3,
  deepspeed+: {{ bf16: {{ enabled: {bf16} }},
               zero_optimization+: {{ reduce_bucket_size: 2000000, stage3_param_persistence_threshold: 10000 }} }},
}}
"""
PORT = 29700
STAGES = (0, 1, 2, 3)
PRECISIONS = ("fp32", "bf16")
RUNS = [(precision, stage) for precision in PRECISIONS for stage in STAGES]
LORA = ("LoRA fp32", 2)  # specs/finetune_lora.jsonnet: LoRA on the committed tiny Llama, ZeRO 2, fp32
KINDS = ("parameters", "gradients", "optimizer", "activations")


@pytest.fixture(scope="module")
def census(tmp_path_factory):
    from expc.compile import build

    project = make_project(tmp_path_factory.mktemp("census"))
    specs = []
    for precision, stage in RUNS:
        spec = project / "specs" / f"{precision}_stage{stage}.jsonnet"
        spec.write_text(SPEC.format(stage=stage, bf16=str(precision == "bf16").lower()))
        specs.append(spec)
    manifests = dict(zip(RUNS, build(specs), strict=True))
    shutil.copytree(ROOT / "assets", project / "assets")
    shutil.copy(ROOT / "specs" / "finetune_lora.jsonnet", project / "specs")
    # packed rows fill max_length, the sequence length the estimate assumes
    (manifests[LORA],) = build([project / "specs" / "finetune_lora.jsonnet"], sets=["data.packing=true"])
    out = project / "census"
    out.mkdir()
    paths = [project / "manifests" / f"{m.digest}.json" for m in manifests.values()]
    result = finish(start([BIN / "deepspeed", "--num_gpus", "2", "--master_port", PORT,
                           ROOT / "tests" / "trainer" / "memory_census.py", out, *paths], project))
    assert result.returncode == 0, result.stderr[-3000:]
    counted = {run: (m.data, [json.loads((out / f"{m.digest}.rank{rank}.json").read_text()) for rank in (0, 1)])
               for run, m in manifests.items()}
    print(table(counted))  # docs/plan.md's table: `pytest -s tests/trainer/test_memory.py`
    return counted


def table(counted) -> str:
    """Markdown rows: stage, kind, estimate, what each rank held (MiB), the largest deviation."""
    rows = ["| run | ZeRO | tensors | estimate (MiB) | rank 0 (MiB) | rank 1 (MiB) | largest deviation |",
            "|---|---|---|---:|---:|---:|---:|"]
    for (precision, stage), (manifest, ranks) in counted.items():
        estimate = memory_per_device(manifest)
        for kind in KINDS:
            expected = getattr(estimate, kind) * GIB
            held = [r[kind] for r in ranks]
            worst = max(((h - expected) / expected for h in held), key=abs)
            rows.append(f"| {precision} | {stage} | {kind} | {expected / 2**20:.3f} | {held[0] / 2**20:.3f} | {held[1] / 2**20:.3f} "
                        f"| {worst:+.1%} |")
    return "\n".join(rows)


@pytest.mark.parametrize("run", [*RUNS, LORA], ids=lambda run: f"{run[0]}-zero{run[1]}")
def test_within_5_percent_of_what_deepspeed_holds(census, run):
    manifest, ranks = census[run]
    estimate = memory_per_device(manifest)
    # the adapter's activations are not held to 5% (docs/plan.md: their count is an estimate)
    kinds = KINDS if run != LORA else KINDS[:3]
    for rank, counted in enumerate(ranks):
        for kind in kinds:
            expected = getattr(estimate, kind) * GIB
            assert counted[kind] == pytest.approx(expected, rel=0.05), (run, rank, kind, counted[kind], expected)


# ZeRO 2 frees its bucket at the end of each backward, before the count
@pytest.mark.parametrize("run", [r for r in RUNS if r[1] in (1, 3)], ids=lambda run: f"{run[0]}-zero{run[1]}")
def test_the_reduce_bucket_is_the_configured_size(census, run):
    manifest, ranks = census[run]
    bucket = dict(memory_per_device(manifest).buffer_parts)["reduce bucket"] * GIB
    for counted in ranks:
        assert counted["buffers"] == pytest.approx(bucket, rel=0.05)
