"""The memory estimate against what DeepSpeed really holds: one launch of 2 CPU ranks builds an
engine at each ZeRO stage in turn (tests/trainer/memory_census.py) and counts, tensor by tensor,
the bytes of parameters, gradients, optimizer state and reduce buckets on each rank; each must be
within 5% of expc.estimate.memory_per_device. The figures are the table in docs/plan.md."""
from __future__ import annotations

import json

import pytest

from expc.estimate import GIB, memory_per_device

from .conftest import BIN, ROOT, finish, make_project, start

# A GPT of many small tensors (32 blocks of width 64, 1.6M parameters), so that a tensor cut by a
# partition boundary (ZeRO 2 keeps its whole gradient on one rank) stays a small share. A
# persistence threshold of 10,000 elements partitions the big matrices at stage 3 and keeps the
# small ones whole on every rank; a 2M-element reduce bucket keeps the buffers small on CPU.
SPEC = """\
local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage({stage}) + {{
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt(32, 4, 64, block_size=64, vocab_size=256),
  data: {{ source: 'synthetic', val_fraction: 0.1 }},
  global_batch_size:: 8,
  micro_batch_size:: 2,
  lr:: 1e-3,
  deepspeed+: {{ zero_optimization+: {{ reduce_bucket_size: 2000000, stage3_param_persistence_threshold: 10000 }} }},
}}
"""
PORT = 29700
STAGES = (0, 1, 2, 3)
KINDS = ("parameters", "gradients", "optimizer")


@pytest.fixture(scope="module")
def census(tmp_path_factory):
    from expc.compile import build

    project = make_project(tmp_path_factory.mktemp("census"))
    specs = []
    for stage in STAGES:
        spec = project / "specs" / f"stage{stage}.jsonnet"
        spec.write_text(SPEC.format(stage=stage))
        specs.append(spec)
    manifests = {stage: m for stage, m in zip(STAGES, build(specs), strict=True)}
    out = project / "census"
    out.mkdir()
    paths = [project / "manifests" / f"{m.digest}.json" for m in manifests.values()]
    result = finish(start([BIN / "deepspeed", "--num_gpus", "2", "--master_port", PORT,
                           ROOT / "tests" / "trainer" / "memory_census.py", out, *paths], project))
    assert result.returncode == 0, result.stderr[-3000:]
    counted = {stage: (m.data, [json.loads((out / f"{m.digest}.rank{rank}.json").read_text()) for rank in (0, 1)])
               for stage, m in manifests.items()}
    print(table(counted))  # docs/plan.md's table: `pytest -s tests/trainer/test_memory.py`
    return counted


def table(counted) -> str:
    """Markdown rows: stage, kind, estimate, what each rank held (MiB), the largest deviation."""
    rows = ["| ZeRO | tensors | estimate (MiB) | rank 0 (MiB) | rank 1 (MiB) | largest deviation |",
            "|---|---|---:|---:|---:|---:|"]
    for stage, (manifest, ranks) in counted.items():
        estimate = memory_per_device(manifest)
        for kind in KINDS:
            expected = getattr(estimate, kind) * GIB
            held = [r[kind] for r in ranks]
            worst = max(((h - expected) / expected for h in held), key=abs)
            rows.append(f"| {stage} | {kind} | {expected / 2**20:.3f} | {held[0] / 2**20:.3f} | {held[1] / 2**20:.3f} "
                        f"| {worst:+.1%} |")
    return "\n".join(rows)


@pytest.mark.parametrize("stage", STAGES)
def test_model_states_within_5_percent_of_what_deepspeed_holds(census, stage):
    manifest, ranks = census[stage]
    estimate = memory_per_device(manifest)
    for rank, counted in enumerate(ranks):
        for kind in KINDS:
            expected = getattr(estimate, kind) * GIB
            assert counted[kind] == pytest.approx(expected, rel=0.05), (stage, rank, kind, counted[kind], expected)


@pytest.mark.parametrize("stage", [1, 3])  # ZeRO 2 frees its bucket at the end of each backward
def test_the_reduce_bucket_is_the_configured_size(census, stage):
    manifest, ranks = census[stage]
    bucket = dict(memory_per_device(manifest).buffer_parts)["reduce bucket"] * GIB
    for counted in ranks:
        assert counted["buffers"] == pytest.approx(bucket, rel=0.05)
