"""The Jsonnet lib: sweeps, data presets, hardware, batch helpers and the experiment's asserts.

Each case is a small spec in a scratch project (a copy of the real lib/), evaluated by the real
go-jsonnet through expc's own evaluate stage; errors are checked by their exact text."""
from __future__ import annotations

import hashlib
import re

import pytest

from expc.compile import compile_spec
from expc.errors import ExpcError
from expc.compile.evaluate import evaluate
from expc.project import Project

HEAD = "local expc = import 'expc.libsonnet';\n"
CPU = "expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_cpu }"


def run(project, body: str, name: str = "case"):
    spec = project / "specs" / f"{name}.jsonnet"
    spec.write_text(HEAD + body)
    return evaluate(spec, Project(project)).document


def error_of(project, body: str) -> str:
    with pytest.raises(ExpcError) as caught:
        run(project, body)
    return caught.value.render()


def test_grid_names_members_by_values_as_written(project):
    doc = run(project, f"expc.sweep.grid({CPU}, {{ lr: ['3e-4', '1e-3'], model: {{ debug: expc.models.gpt_debug }} }})")
    assert sorted(doc) == ["lr=1e-3,model=debug", "lr=3e-4,model=debug"]
    assert doc["lr=3e-4,model=debug"]["deepspeed"]["optimizer"]["params"]["lr"] == 3e-4
    assert doc["lr=3e-4,model=debug"]["model"]["n_layer"] == 2


def test_grid_labels_bare_numbers_exactly(project):
    doc = run(project, f"expc.sweep.grid({CPU}, {{ lr: [3e-4, 1e-5, 0.1, 2] }})")
    assert sorted(doc) == ["lr=0.0003", "lr=0.1", "lr=1e-5", "lr=2"]
    assert [doc[k]["deepspeed"]["optimizer"]["params"]["lr"] for k in ("lr=0.0003", "lr=1e-5")] == [3e-4, 1e-5]


def test_grid_reads_a_string_as_a_number_only_where_json_does(project):
    # '5.' and '2024-01' once passed a looser check and then stopped the build inside the lib
    # (std.parseJson: "invalid character"); they are strings, as JSON has them
    written = ["3e-4", "-1", "0.5", "10", "0", "1E+5", "5.", "2024-01", "01", ".5", "1e", "+1", "abc"]
    doc = run(project, f"local g = expc.sweep.grid({{}}, {{ v: {written!r} }});\n"
                       "{ [m]: g[m].v for m in std.objectFields(g) }")
    assert {name[len("v="):]: value for name, value in doc.items()} == {
        "3e-4": 3e-4, "-1": -1, "0.5": 0.5, "10": 10, "0": 0, "1E+5": 1e5,
        "5.": "5.", "2024-01": "2024-01", "01": "01", ".5": ".5", "1e": "1e", "+1": "+1", "abc": "abc"}


def test_grid_dotted_path_keeps_the_rest_of_the_section(project):
    doc = run(project, f"expc.sweep.grid({CPU}, {{ 'train.max_steps': [200, 400] }})")
    assert doc["train.max_steps=400"]["train"]["max_steps"] == 400
    assert doc["train.max_steps=400"]["train"]["log_interval"] == 10
    # the schedule reads train.max_steps through `self`: late binding reaches it
    assert doc["train.max_steps=400"]["deepspeed"]["scheduler"]["params"]["total_num_steps"] == 400


def test_grid_on_a_knob_keeps_it_hidden_and_recomputes_accumulation(project):
    doc = run(project, f"expc.sweep.grid({CPU} + {{ global_batch_size:: 16 }}, {{ micro_batch_size: [2, 8] }})")
    assert doc["micro_batch_size=2"]["deepspeed"]["gradient_accumulation_steps"] == 4
    assert doc["micro_batch_size=8"]["deepspeed"]["gradient_accumulation_steps"] == 1
    assert "micro_batch_size" not in doc["micro_batch_size=2"]


def test_grid_of_1000_members(project):
    doc = run(project, f"expc.sweep.grid({CPU}, {{ lr: std.range(1, 10), seed: std.range(0, 9), 'train.max_steps': std.range(100, 109) }})")
    assert len(doc) == 1000
    assert "lr=7,seed=3,train.max_steps=105" in doc


def test_grid_refuses_unlabelled_objects(project):
    assert error_of(project, f"expc.sweep.grid({CPU}, {{ model: [expc.models.gpt_cpu] }})") == (
        'lib/sweep.libsonnet:73:12: sweep axis "model": list values must be numbers, strings or '
        "booleans; give other values labels: { label: value }\n  called from specs/case.jsonnet:2:1")


def test_variants(project):
    doc = run(project, f"expc.sweep.variants({CPU}, {{ a: {{ seed: 1 }}, b: {{ seed: 2 }} }})")
    assert {k: v["seed"] for k, v in doc.items()} == {"a": 1, "b": 2}


def test_data_presets(project):
    doc = run(project, "{ s: expc.data.stdlib(), t: expc.data.tokens('d'), x: expc.data.text('f.txt', max_files=3) }")
    assert doc["s"] == {"source": "stdlib", "max_files": 400, "val_fraction": 0.1}
    assert doc["t"] == {"source": "tokens", "path": "d", "dtype": "uint16", "val_fraction": 0.05}
    assert doc["x"] == {"source": "text", "path": "f.txt", "max_files": 3, "val_fraction": 0.1}


def test_token_vocabulary_must_fit_the_shard_dtype(project):
    body = ("expc.experiment + { hardware: expc.hardware.h100_80gb_x8, data: expc.data.tokens('d'),\n"
            "  model: expc.models.gpt_124m { vocab_size: 100000 } }")
    assert error_of(project, body) == (
        "lib/experiment.libsonnet:44:3: model.vocab_size 100000 does not fit uint16 token shards; "
        'use data.tokens(path, dtype="uint32")')


def test_nodes_of_h100(project):
    doc = run(project, "{ four: expc.hardware.h100_80gb_nodes(4), one: expc.hardware.h100_80gb_nodes(1) }")
    assert doc["four"]["name"] == "h100_80gb_x8_n4"
    assert doc["four"]["nodes"] * doc["four"]["procs_per_node"] == 32
    assert doc["four"]["interconnect"] == "nvlink+infiniband"
    assert doc["one"]["name"] == "h100_80gb_x8"


def test_nodes_needs_a_whole_number(project):
    assert error_of(project, "expc.hardware.h100_80gb_nodes(0)").startswith(
        "lib/hardware.libsonnet:")
    assert "n must be a whole number >= 1, got 0" in error_of(project, "expc.hardware.h100_80gb_nodes(0)")


def test_batch_helpers(project):
    doc = run(project, "{ a: expc.batch.accumulation(1024, 4, 32), g: expc.batch.global_batch(4, 8, 32) }")
    assert doc == {"a": 8, "g": 1024}


@pytest.mark.parametrize("mixin, message", [
    ("{ precision:: 'bf16' }", 'precision "bf16" needs hardware with bf16; "cpu_laptop" has none (use "fp32")'),
    ("{ precision:: 'fp8' }", 'precision must be "bf16", "fp16" or "fp32", got "fp8"'),
    ("expc.presets.quick_test + { warmup_steps:: 60 }", "warmup_steps (60) must be shorter than train.max_steps (50)"),
    ("{ global_batch_size:: 10 }", "global batch 10 is not a multiple of micro batch 4 x world size 2 = 8"),
])
def test_experiment_asserts(project, mixin, message):
    assert error_of(project, f"{CPU} + {mixin}").split(": ", 1)[1] == message


def test_fp16_adds_loss_scaling_only_when_asked(project):
    a100 = "expc.experiment + { hardware: expc.hardware.a100_40gb_x1, model: expc.models.gpt_cpu }"
    assert "fp16" not in run(project, a100)["deepspeed"]
    fp16 = run(project, a100 + " + expc.presets.fp16")["deepspeed"]
    assert fp16["fp16"]["enabled"] is True and fp16["fp16"]["loss_scale"] == 0
    assert fp16["bf16"] == {"enabled": False}


def test_zero_overlap_follows_the_hardware(project):
    gpu = run(project, "expc.experiment + expc.zero.stage3 + { hardware: expc.hardware.h100_80gb_x8, model: expc.models.gpt_124m, global_batch_size:: 32 }")
    cpu = run(project, f"{CPU} + expc.zero.stage2")
    assert gpu["deepspeed"]["zero_optimization"]["overlap_comm"] is True
    assert cpu["deepspeed"]["zero_optimization"]["overlap_comm"] is False


# One row per model size; together the rows use every hardware profile and every ZeRO, optimizer,
# schedule and experiment preset at least once. Each row: hardware, model, mixins by table.
PRESET_ROWS = [
    ("cpu_laptop", "gpt_debug", {"zero": ["stage0"], "optim": ["warmup_constant"], "presets": ["quick_test", "fp32"]}),
    ("cpu_laptop", "gpt_cpu", {"zero": ["stage1", "offload_optimizer"], "optim": ["warmup_linear_decay"],
                               "presets": ["full_training"]}),
    ("a100_40gb_x1", "gpt_124m", {"zero": ["stage2"], "optim": ["warmup_cosine(0.0)"], "presets": ["fp16"]}),
    ("get('h100_80gb_x1')", "gpt_350m", {"zero": ["stage3", "offload_optimizer", "offload_param"],
                                         "optim": ["adamw"], "presets": ["bf16"]}),
    ("a100_80gb_x8", "gpt_760m", {"zero": ["stage(2)"], "optim": ["adamw_with(weight_decay=0.0)", "warmup_constant"]}),
    ("h100_80gb_x8", "gpt_1_3b", {"zero": ["stage3"], "optim": ["warmup_linear_decay"]}),
    ("nodes(expc.hardware.a100_80gb_x8, 2)", "gpt_2_7b", {"zero": ["stage3", "offload_optimizer"]}),
    ("h100_80gb_nodes(4)", "gpt_6_7b", {"zero": ["stage3"], "optim": ["warmup_constant"], "presets": ["bf16"]}),
]
SCHEDULER = {"warmup_constant": "WarmupLR", "warmup_linear_decay": "WarmupDecayLR", "warmup_cosine": "WarmupCosineLR"}


def _name(expr: str) -> str:
    return expr.split("(", 1)[0]  # "warmup_cosine(0.0)" -> "warmup_cosine"


@pytest.mark.parametrize("hardware, model, mixins", PRESET_ROWS, ids=[row[1] for row in PRESET_ROWS])
def test_every_preset_compiles(project, hardware, model, mixins):
    # through the whole pipeline (schema, batch arithmetic, precision, memory), in process
    spec = project / "specs" / f"{model}.jsonnet"
    mixed = "".join(f"expc.{table}.{expr} + " for table, exprs in mixins.items() for expr in exprs)
    spec.write_text(HEAD + f"expc.experiment + {mixed}{{ hardware: expc.hardware.{hardware}, "
                           f"model: expc.models.{model}, global_batch_size:: 64, micro_batch_size:: 1 }}")
    [manifest] = compile_spec(spec, Project(project))
    data = manifest.data
    assert {k: data["model"][k] for k in ("n_layer", "n_embd")} == {
        k: run(project, f"expc.models.{model}", "size")[k] for k in ("n_layer", "n_embd")}
    zero = data["deepspeed"]["zero_optimization"]
    stages = [int(re.search(r"\d", e)[0]) for e in mixins["zero"] if e.startswith("stage")]
    assert zero["stage"] == stages[-1]
    assert ("offload_optimizer" in zero, "offload_param" in zero) == (
        "offload_optimizer" in mixins["zero"], "offload_param" in mixins["zero"])
    schedules = [_name(e) for e in mixins.get("optim", []) if _name(e) in SCHEDULER]
    assert data["deepspeed"]["scheduler"]["type"] == SCHEDULER[(schedules or ["warmup_cosine"])[-1]]


# Fine-tuning rows: (hardware, adapter preset, template, hub config); a hub base at a commit with
# its shape given, so nothing is read from disk.
REVISION = "0123456789abcdef0123456789abcdef01234567"
FINETUNE_ROWS = [
    ("rtx4090_24gb", "minimal", "alpaca", "qwen2_5_1_5b"),
    ("a100_40gb_x1", "standard", "plain", "qwen2_5_coder_1_5b"),
    ("h100_80gb_x1", "full", "chat()", "llama_3_2_1b"),
]


@pytest.mark.parametrize("hardware, adapter, template, config", FINETUNE_ROWS, ids=[r[1] for r in FINETUNE_ROWS])
def test_every_finetune_preset_compiles(project, hardware, adapter, template, config):
    (project / "data.jsonl").write_text('{"instruction": "Say hi.", "input": "", "output": "hi"}\n' * 20)
    spec = project / "specs" / f"{adapter}.jsonnet"
    spec.write_text(HEAD + f"""expc.experiment + expc.zero.stage2 + {{
      hardware: expc.hardware.{hardware},
      model: expc.models.hf('Org/Base', revision='{REVISION}', config=expc.models.hf_configs.{config}),
      adapter: expc.adapters.{adapter},
      data: expc.data.jsonl('data.jsonl', template=expc.templates.{template}),
      global_batch_size:: 16, micro_batch_size:: 1,
    }}""")
    [manifest] = compile_spec(spec, Project(project))
    data = manifest.data
    assert data["adapter"] == run(project, f"expc.adapters.{adapter}", "adapter")
    assert data["model"]["config"] == run(project, f"expc.models.hf_configs.{config}", "config")
    assert data["data"]["train"]["sha256"] == hashlib.sha256((project / "data.jsonl").read_bytes()).hexdigest()
    assert data["data"]["template"]["name"] == _name(template)


def test_preset_rows_cover_every_lib_preset(project):
    # a preset added to the lib needs a row above; `get`, `gpt`, `hf`, `lora`, `chat` and `custom`
    # are helpers, not presets
    tables = ["zero", "optim", "presets", "models", "hardware", "adapters", "templates"]
    fields = run(project, f"{{ [t]: std.objectFieldsAll(expc[t]) for t in {tables} }}")
    fields["models"] += run(project, "std.objectFieldsAll(expc.models.hf_configs)")
    written = {table: [e for _, _, mixins in PRESET_ROWS for e in mixins.get(table, [])] for table in tables}
    written["models"] = [model for _, model, _ in PRESET_ROWS] + [row[3] for row in FINETUNE_ROWS]
    written["hardware"] = [hardware for hardware, _, _ in PRESET_ROWS] + [row[0] for row in FINETUNE_ROWS]
    written["adapters"] = [row[1] for row in FINETUNE_ROWS]
    written["templates"] = [row[2] for row in FINETUNE_ROWS]
    helpers = ("get", "gpt", "hf", "hf_configs", "lora", "custom")
    unused = {table: [f for f in names if f not in helpers
                      and not any(re.search(rf"\b{f}\b", e) for e in written[table])]
              for table, names in fields.items()}
    assert unused == {table: [] for table in tables}
