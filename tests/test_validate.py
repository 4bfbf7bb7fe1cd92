"""validate: the schema (every problem at once, did-you-mean) and the semantic rules."""
import copy
from pathlib import Path

import pytest

from expc.compile import compile_spec
from expc.errors import ExpcError
from expc.compile.validate import schema_problems, semantic_problems, validate

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny():
    return compile_spec(ROOT / "specs" / "tiny.jsonnet")[0].data


def problems_of(document):
    with pytest.raises(ExpcError) as info:
        validate(document)
    return [(p.location, p.message) for p in info.value.problems]


def test_tiny_is_valid(tiny):
    validate(tiny)
    assert schema_problems(tiny) == [] and semantic_problems(tiny) == []


def test_every_schema_problem_at_once_sorted_by_path(tiny):
    doc = copy.deepcopy(tiny)
    doc["model"]["n_layr"] = 3
    doc["train"]["max_steps"] = 0
    doc["seed"] = "x"
    del doc["data"]["val_fraction"]
    assert problems_of(doc) == [
        ("$.data.val_fraction", "missing required key 'val_fraction'"),
        ("$.model.n_layr", 'unknown key \'n_layr\' (did you mean "n_layer"?)'),
        ("$.seed", '"x" is not of type "integer"'),
        ("$.train.max_steps", "0 is less than the minimum of 1"),
    ]


def test_batch_arithmetic(tiny):
    doc = copy.deepcopy(tiny)
    doc["deepspeed"]["train_batch_size"] = 24
    assert problems_of(doc) == [("$.deepspeed.train_batch_size",
        "train_batch_size is 24, but micro batch 8 x accumulation 1 x world size 2 "
        "(1 node(s) x 2 processes) = 16")]


def test_memory_fit(tiny):
    doc = copy.deepcopy(tiny)
    doc["model"].update(n_layer=32, n_embd=4096, n_head=32, block_size=2048, vocab_size=50304)
    doc["deepspeed"]["train_micro_batch_size_per_gpu"] = 1
    doc["deepspeed"]["gradient_accumulation_steps"] = 8
    [(location, message)] = problems_of(doc)
    assert location == "$.hardware.device_memory_gib"
    assert message == (
        # fp32 on CPU, stage 2, 2 processes, 6.66B parameters: 4 + 4/2 + 12/2 bytes per parameter
        # (ZeRO 2 keeps an fp32 copy of its partition even in fp32); activations 32 layers x 68
        # bytes x 2048 tokens x 4096 wide (no dropout: 64, not 68); DeepSpeed's default reduce bucket,
        # 5e8 fp32 elements
        "the run does not fit in device memory: an estimated 102.3 GiB per device, but 'cpu_laptop' has 8 GiB\n"
        "  parameters 24.8 + gradients 12.4 + optimizer 37.2 + activations 16.8 + buffers 1.9 + fragmentation 9.3 "
        "= 102.3 GiB\n"
        "  no single change fits (a smaller micro batch, a higher ZeRO stage, activation checkpointing, offload, "
        "up to 16x the devices): see `expc plan`")
    doc["model"].update(n_layer=24, n_embd=2048, n_head=16, block_size=256)  # 1.3B
    assert [loc for loc, _ in problems_of(doc)] == ["$.hardware.device_memory_gib"]
    doc["deepspeed"]["zero_optimization"].update(stage=3, offload_optimizer={"device": "cpu"},
                                                 offload_param={"device": "cpu"})
    validate(doc)  # only gradients, activations and buffers stay on the device now


def test_memory_fit_offers_only_changes_that_fit(tiny):
    doc = copy.deepcopy(tiny)  # GPT-2 small, micro batch 8: activations do not fit 8 GiB
    doc["model"].update(n_layer=12, n_embd=768, n_head=12, block_size=1024, vocab_size=50304)
    doc["deepspeed"].update(train_micro_batch_size_per_gpu=8, gradient_accumulation_steps=4, train_batch_size=64)
    [(_, message)] = problems_of(doc)
    assert message == (
        "the run does not fit in device memory: an estimated 11.9 GiB per device, but 'cpu_laptop' has 8 GiB\n"
        "  parameters 0.5 + gradients 0.2 + optimizer 0.7 + activations 7.6 + buffers 1.9 + fragmentation 1.1 "
        "= 11.9 GiB\n"
        "  these fit (each re-estimated, the global batch kept; `expc plan` shows the step time):\n"
        "    micro batch 4 x accumulation 8: 7.7 GiB (--set deepspeed.train_micro_batch_size_per_gpu=4 "
        "--set deepspeed.gradient_accumulation_steps=8)")
    # and the hint is true: applied, it validates
    doc["deepspeed"].update(train_micro_batch_size_per_gpu=4, gradient_accumulation_steps=8)
    validate(doc)
    # the fit check is the only rule `expc plan` leaves out
    doc["deepspeed"].update(train_micro_batch_size_per_gpu=8, gradient_accumulation_steps=4)
    validate(doc, fit_check=False)


def test_precision_and_auto(tiny):
    doc = copy.deepcopy(tiny)
    doc["deepspeed"]["bf16"] = {"enabled": True}
    doc["deepspeed"]["gradient_clipping"] = "auto"
    assert problems_of(doc) == [
        ("$.deepspeed.bf16.enabled", "bf16 is enabled but hardware 'cpu_laptop' does not support bf16"),
        ("$.deepspeed.gradient_clipping",
         '"auto" is not allowed: every value is spelled out so the manifest is exactly what runs'),
    ]
def test_unknown_deepspeed_key_gets_did_you_mean(tiny):
    doc = copy.deepcopy(tiny)
    doc["deepspeed"]["zero_optimization"]["stag"] = 2
    [(location, message)] = problems_of(doc)
    assert location == "$.deepspeed.zero_optimization.stag"
    assert message == "unknown key 'stag' (did you mean \"stage\"?)"




def test_misspelt_optimizer_and_schedule_params_get_did_you_mean(tiny):
    doc = copy.deepcopy(tiny)
    doc["deepspeed"]["optimizer"]["params"]["betass"] = [0.9, 0.99]
    doc["deepspeed"]["scheduler"]["params"]["warmup_num_stepz"] = 3
    assert problems_of(doc) == [
        ("$.deepspeed.optimizer.params.betass", "unknown key 'betass' (did you mean \"betas\"?)"),
        ("$.deepspeed.scheduler.params.warmup_num_stepz",
         "unknown key 'warmup_num_stepz' (did you mean \"warmup_num_steps\"?)"),
    ]


@pytest.mark.parametrize("name,torch_adam", [("AdamW", False), ("adam", None), ("ADAMW", 1)])
def test_cpu_adam_needs_torch_adam(tiny, name, torch_adam):
    doc = copy.deepcopy(tiny)
    params = doc["deepspeed"]["optimizer"]["params"]
    doc["deepspeed"]["optimizer"]["type"] = name
    params.pop("torch_adam")
    if torch_adam is not None:
        params["torch_adam"] = torch_adam
    problems = [(p.location, p.message) for p in semantic_problems(doc)]
    assert problems == [("$.deepspeed.optimizer.params.torch_adam",
                         f"optimizer {name!r} on CPU needs \"torch_adam\": true, else DeepSpeed compiles its "
                         "own Adam (about a minute) at every launch; set it in the optimizer params, as "
                         "expc.optim.adamw does")]


def test_cpu_rule_leaves_other_optimizers_and_gpus_alone(tiny):
    doc = copy.deepcopy(tiny)
    doc["deepspeed"]["optimizer"] = {"type": "SGD", "params": {"lr": 0.1}}
    assert semantic_problems(doc) == []
    doc["deepspeed"]["optimizer"] = {"type": "AdamW", "params": {"lr": 0.1}}
    doc["hardware"].update(accelerator="cuda", backend="nccl")
    assert [p for p in semantic_problems(doc) if "torch_adam" in p.message] == []


def test_shape_and_backend_rules(tiny):
    doc = copy.deepcopy(tiny)
    doc["model"]["n_head"] = 3
    doc["model"]["vocab_size"] = 100
    doc["hardware"]["backend"] = "nccl"
    assert problems_of(doc) == [
        ("$.hardware.backend", "backend 'nccl' does not run on CPU; use 'gloo'"),
        ("$.model.n_embd", "n_embd 128 is not divisible by n_head 3"),
        ("$.model.vocab_size", "vocab_size 100 is too small for a byte-level corpus (needs 256)"),
    ]


def test_validator_is_built_once():
    from expc.compile.validate import _validator

    assert _validator() is _validator()
