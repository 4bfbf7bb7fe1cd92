"""The DeepSpeed schema: in step with the installed DeepSpeed, never stricter than its own parser.

These tests import deepspeed (a few seconds); `expc build` itself never does.
"""
import copy
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from expc.compile import compile_spec
from expc.project import Project
from expc.compile.validate import schema_problems
from expc.schema import manifest_schema

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = "scripts/generate_deepspeed_schema.py"
COMMITTED = ROOT / "src" / "expc" / "schema" / "deepspeed.schema.json"


@pytest.fixture(scope="module")
def deepspeed_config():
    """DeepSpeed's real config parser, for a given world size, without init_distributed.

    DeepSpeedConfig asks torch.distributed for the rank and world size (falling back to 1 when no
    process group exists); we answer with the manifest's world size so the batch assertion runs
    against the world the manifest plans for.
    """
    import deepspeed.runtime.config as config_module

    def parse(section: dict, world_size: int):
        with mock.patch.object(config_module.dist, "get_rank", return_value=0), \
             mock.patch.object(config_module.dist, "get_world_size", return_value=world_size):
            return config_module.DeepSpeedConfig(copy.deepcopy(section))
    return parse


def test_committed_schema_matches_installed_deepspeed():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import generate_deepspeed_schema as generator
    finally:
        sys.path.pop(0)
    schema, missing = generator.generate()
    assert missing == []
    assert generator.render(schema) == COMMITTED.read_text(encoding="utf-8"), (
        "src/expc/schema/deepspeed.schema.json is out of step with the installed DeepSpeed; "
        f"run `.venv/bin/python {GENERATOR}` and review the diff")


def committed_manifests():
    return sorted(p for p in (ROOT / "manifests").glob("*.json") if p.name != "index.json")


@pytest.mark.parametrize("path", committed_manifests(), ids=lambda p: p.stem[:12])
def test_committed_manifest_is_accepted_by_deepspeed(path, deepspeed_config):
    manifest = json.loads(path.read_text(encoding="utf-8"))
    world = manifest["hardware"]["nodes"] * manifest["hardware"]["procs_per_node"]
    config = deepspeed_config(manifest["deepspeed"], world)
    assert config.train_batch_size == manifest["deepspeed"]["train_batch_size"]
    assert config.zero_optimization_stage == manifest["deepspeed"]["zero_optimization"]["stage"]


def test_spec_manifests_are_accepted_by_deepspeed(deepspeed_config):
    """Every spec under specs/ and every golden manifest case (sweeps included), compiled now,
    parses in DeepSpeed."""
    specs = sorted((ROOT / "specs").rglob("*.jsonnet"))
    cases = sorted((ROOT / "tests" / "cases" / "manifests").glob("*/spec.jsonnet"))
    assert specs and cases
    for spec in specs + cases:
        tla = {"lr": 1e-3} if spec.parent.name == "tla" else None
        for m in compile_spec(spec, Project(ROOT), tla=tla):
            hw = m.data["hardware"]
            deepspeed_config(m.data["deepspeed"], hw["nodes"] * hw["procs_per_node"])


@pytest.fixture(scope="module")
def tiny():
    return compile_spec(ROOT / "specs" / "tiny.jsonnet")[0].data


@pytest.mark.parametrize("change", [
    {"zero_optimization": {"stage": 2, "stag": 1}},                   # unknown ZeRO key
    {"zero_optimization": {"stage": 7}},                              # no such stage
    {"zero_optimization": {"stage": 3, "offload_param": {"device": "gpu"}}},  # no such device
    {"bf16": {"enabled": True, "enabeld": True}},                     # unknown precision key
    {"zero_optimization": {"stage": 2, "reduce_bucket_size": 0}},     # DeepSpeed wants > 0
    # Values DeepSpeed's parsing functions and validators check by hand (field_checks)
    {"checkpoint": {"tag_validation": "Loud"}},
    {"checkpoint": {"parallel_write": {"pipeline_stage": "yes"}}},
    {"gradient_allreduce_op": "max"},
    {"communication_data_type": "fp8"},
    {"seq_parallel_communication_data_type": "int8"},
    {"torch_autocast": {"enabled": True, "dtype": "fp8"}},
    {"data_types": {"keep_in_fp32_modules": [1]}},
    {"fp16": {"loss_scale": -1}},
])
def test_both_reject(change, tiny, deepspeed_config):
    """Where DeepSpeed's models refuse a value, the schema refuses it too, at build time."""
    section = {**copy.deepcopy(tiny["deepspeed"]), **change}
    with pytest.raises(Exception):
        deepspeed_config(section, 2)
    assert schema_problems({**tiny, "deepspeed": section})


def test_deprecated_alias_accepted_and_marked(tiny, deepspeed_config):
    section = copy.deepcopy(tiny["deepspeed"])
    section["zero_optimization"]["stage3_gather_fp16_weights_on_model_save"] = True
    deepspeed_config(section, 2)
    assert schema_problems({**tiny, "deepspeed": section}) == []
    zero = manifest_schema()["$defs"]["DeepSpeedZeroConfig"]["properties"]
    entry = zero["stage3_gather_fp16_weights_on_model_save"]
    assert entry["deprecated"] is True
    assert "use `gather_16bit_weights_on_model_save` instead" in entry["description"]


def walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


def _closed_by_branches(node: dict) -> bool:
    branches = [b.get("then", {}) for b in node.get("allOf", [])]
    return bool(branches) and all(b.get("additionalProperties") is False for b in branches)


def test_schema_rules_hold_everywhere():
    """Every property described, every integer bounded, every model closed to unknown keys. A
    section whose fields depend on one value (model.arch, data.source) is closed by each branch."""
    schema = manifest_schema()
    undescribed, unbounded, open_models = [], [], []
    for path, node in walk(schema):
        parts = set(path.split("/"))
        deepspeed = path.startswith(("/properties/deepspeed", "/$defs"))
        if {"if", "else", "not", "dependentSchemas"} & parts or ("then" in parts and deepspeed):
            continue  # conditions on values already defined elsewhere
        for name, prop in node.get("properties", {}).items():
            # a branch's discriminator (`arch: {const: "gpt"}`) is described where it is declared
            if isinstance(prop, dict) and not prop.get("description") and not (
                    "then" in parts and set(prop) <= {"const", "enum"}):
                undescribed.append(f"{path}/properties/{name}")
        types = node.get("type")
        if types == "integer" or (isinstance(types, list) and "integer" in types):
            low = "minimum" in node or "exclusiveMinimum" in node
            high = "maximum" in node or "exclusiveMaximum" in node
            if not (low and high):
                unbounded.append(path)
        if "properties" in node and node.get("additionalProperties") is not False and not _closed_by_branches(node):
            open_models.append(path)
    assert undescribed == [] and unbounded == [] and open_models == []


def test_generator_names_its_command_in_help():
    out = subprocess.run([sys.executable, str(ROOT / GENERATOR), "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--check" in out


# Objects the schema leaves open, and why: DeepSpeed hands their keys on without reading them.
OPEN_OBJECTS = {
    "/properties/data_efficiency": "curriculum metrics are keyed by names the user chooses",
    "/properties/datastates_ckpt": "passed whole to the datastates library",
    "/$defs/WeightQuantConfig/properties/quantized_initialization": "a free Dict in DeepSpeed's model",
    "/$defs/WeightQuantConfig/properties/post_init_quant": "a free Dict in DeepSpeed's model",
    # Closed per type by the if/then rules; test_every_type_closes_its_params checks them.
    "/properties/optimizer/properties/params": "closed per optimizer type",
    "/properties/scheduler/properties/params": "closed per schedule",
}
# Optimizer types whose params stay open: mup's optimizers pass **kwargs to the one they wrap.
OPEN_OPTIMIZERS = {"muadam", "muadamw", "musgd"}


def test_no_object_is_open_unless_listed():
    """A DeepSpeed upgrade that adds an open object fails here until it is closed or listed."""
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    open_objects = []
    for path, node in walk(schema):
        if {"if", "then", "else", "not"} & set(path.split("/")):
            continue  # conditions, not shapes
        types = node.get("type")
        if types == "object" or (isinstance(types, list) and "object" in types):
            if "properties" not in node or node.get("additionalProperties") is not False:
                open_objects.append(path)
    assert sorted(open_objects) == sorted(OPEN_OBJECTS)


def _matching_params(section: str, deepspeed: dict) -> list[dict]:
    """The `params` schemas that the if/then rules apply to this DeepSpeed section."""
    import jsonschema_rs

    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    found = []
    # Optimizer rules sit on the whole section (offload is outside `optimizer`), schedule rules
    # on `scheduler`.
    if section == "optimizer":
        rules, instance = schema["allOf"], deepspeed
    else:
        rules, instance = schema["properties"]["scheduler"]["allOf"], deepspeed["scheduler"]
    for rule in rules:
        if jsonschema_rs.Draft202012Validator({**rule["if"], "$defs": schema["$defs"]}).is_valid(instance):
            then = rule["then"]["properties"]
            found.append((then["optimizer"]["properties"] if section == "optimizer" else then)["params"])
    return found


def test_every_type_closes_its_params():
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    optimizer_type = schema["properties"]["optimizer"]["properties"]["type"]
    for name in optimizer_type["else"]["enum"]:
        for offload in ("none", "cpu"):
            for torch_adam in (False, True):
                deepspeed = {"optimizer": {"type": name, "params": {"torch_adam": torch_adam}},
                             "zero_optimization": {"stage": 2, "offload_optimizer": {"device": offload}}}
                closing = _matching_params("optimizer", deepspeed)
                assert len(closing) == (0 if name in OPEN_OPTIMIZERS else 1), (name, offload, torch_adam)
    for name in schema["properties"]["scheduler"]["properties"]["type"]["enum"]:
        assert len(_matching_params("scheduler", {"scheduler": {"type": name, "params": {}}})) == 1, name


def _engine(optimizer: dict, cpu_offload=False):
    """What DeepSpeedEngine's optimizer builder reads from self, around its real methods."""
    from types import SimpleNamespace

    from deepspeed.runtime.config import DEEPSPEED_OPTIMIZERS
    from deepspeed.runtime.engine import DeepSpeedEngine

    name = optimizer["type"]  # DeepSpeedConfig lowers DeepSpeed's own names, as here
    name = name.lower() if name.lower() in DEEPSPEED_OPTIMIZERS else name
    engine = SimpleNamespace(optimizer_name=lambda: name, optimizer_params=lambda: optimizer.get("params"),
                             zero_use_cpu_optimizer=lambda: cpu_offload, bf16_optimizer_states=lambda: False,
                             zenflow=False, has_moe_layers=False)
    engine.get_optimizer_configuration = DeepSpeedEngine.get_optimizer_configuration.__get__(engine)
    return engine, DeepSpeedEngine


def build_optimizer(optimizer: dict, cpu_offload=False):
    import torch

    engine, cls = _engine(optimizer, cpu_offload)
    return cls._configure_basic_optimizer(engine, [torch.nn.Parameter(torch.zeros(2))])


def build_scheduler(scheduler: dict):
    import torch
    from types import SimpleNamespace

    from deepspeed.runtime.engine import DeepSpeedEngine

    engine = SimpleNamespace(scheduler_name=lambda: scheduler["type"], scheduler_params=lambda: scheduler.get("params"))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    return DeepSpeedEngine._scheduler_from_config(engine, optimizer)


def _every_allowed_key(section, deepspeed, given: dict, cls) -> dict:
    """`given`, plus every other key the schema allows here, at the default of `cls`'s signature
    (DeepSpeed's own extras, not in it, at null)."""
    import inspect

    (params,) = _matching_params(section, deepspeed)
    signature = inspect.signature(cls).parameters
    values = dict(given)
    for key in params["properties"]:
        if key not in values:
            values[key] = signature[key].default if key in signature else None
    return values


@pytest.mark.parametrize("name,given,expected", [
    ("AdamW", {"torch_adam": True}, "AdamW"),
    ("adam", {"torch_adam": True, "adam_w_mode": True}, "AdamW"),
    ("ADAM", {"torch_adam": True, "adam_w_mode": False}, "Adam"),
    ("Adagrad", {}, "Adagrad"),
    ("SGD", {}, "SGD"), ("RMSprop", {}, "RMSprop"), ("NAdam", {}, "NAdam"), ("LBFGS", {}, "LBFGS"),
])
def test_every_key_the_schema_allows_builds_in_deepspeed(name, given, expected):
    """Every params key the schema allows for a type, at once, through DeepSpeed's own optimizer
    builder (the torch-built types: the others compile an op when built)."""
    import torch

    deepspeed = {"optimizer": {"type": name, "params": given}}
    params = _every_allowed_key("optimizer", deepspeed, given, getattr(torch.optim, expected))
    params["lr"] = 0.01
    built = build_optimizer({"type": name, "params": params})
    assert type(built) is getattr(torch.optim, expected)


@pytest.mark.parametrize("scheduler", [
    {"type": "WarmupLR", "params": {}},
    {"type": "WarmupDecayLR", "params": {"total_num_steps": 10}},
    {"type": "WarmupCosineLR", "params": {"total_num_steps": 10}},
    {"type": "OneCycle", "params": {"cycle_min_lr": 0.01, "cycle_max_lr": 0.1}},
    {"type": "LRRangeTest", "params": {}},
    {"type": "StepLR", "params": {"step_size": 2}},
])
def test_every_schedule_key_the_schema_allows_builds_in_deepspeed(scheduler):
    from deepspeed.runtime import lr_schedules
    import torch

    cls = getattr(lr_schedules, scheduler["type"], None) or getattr(torch.optim.lr_scheduler, scheduler["type"])
    params = _every_allowed_key("scheduler", {"scheduler": scheduler}, scheduler["params"], cls)
    assert type(build_scheduler({"type": scheduler["type"], "params": params})) is cls


@pytest.mark.parametrize("optimizer,cpu_offload", [
    ({"type": "AdamW", "params": {"lr": 0.1, "torch_adam": True, "betass": [0.9, 0.99]}}, False),
    ({"type": "Adam", "params": {"lr": 0.1, "betass": [0.9, 0.99]}}, False),      # FusedAdam
    ({"type": "Adam", "params": {"lr": 0.1, "set_grad_none": True}}, True),       # CPU Adam lacks it
    ({"type": "adam", "params": {"torch_adam": True, "adam_w_mode": False, "decoupled_weight_decay": True,
                                  "amsgrad": False, "foo": 1}}, False),
    ({"type": "SGD", "params": {"lr": 0.1, "momentm": 0.9}}, False),
    ({"type": "Lamb", "params": {"lr": 0.1, "max_grad_norm": 1.0}}, False),       # DeepSpeed refuses it
])
def test_both_reject_optimizer_params(optimizer, cpu_offload, tiny):
    """A params key DeepSpeed's optimizer builder refuses (TypeError or ValueError, raised before
    any op is compiled) fails the schema too."""
    with pytest.raises((TypeError, ValueError)):
        build_optimizer(copy.deepcopy(optimizer), cpu_offload)
    section = {**copy.deepcopy(tiny["deepspeed"]), "optimizer": optimizer}
    if cpu_offload:
        section["zero_optimization"] = {"stage": 2, "offload_optimizer": {"device": "cpu"}}
    assert schema_problems({**tiny, "deepspeed": section})


@pytest.mark.parametrize("scheduler", [
    {"type": "WarmupCosineLR", "params": {"total_num_steps": 10, "warmup_num_stepz": 3}},
    {"type": "WarmupDecayLR", "params": {}},                       # total_num_steps is required
    {"type": "WarmupLR"},                                          # DeepSpeed calls it with **params
])
def test_both_reject_scheduler_params(scheduler, tiny):
    with pytest.raises(TypeError):
        build_scheduler(copy.deepcopy(scheduler))
    assert schema_problems({**tiny, "deepspeed": {**tiny["deepspeed"], "scheduler": scheduler}})


def test_optimizer_names_match_like_deepspeed(tiny):
    """DeepSpeed's own names in any letter case, torch.optim's exactly as spelled."""
    def problems(name):
        section = {**tiny["deepspeed"], "optimizer": {"type": name, "params": {"lr": 0.1}}}
        return schema_problems({**tiny, "deepspeed": section})
    assert problems("LaMb") == [] and problems("RMSprop") == []
    assert problems("rmsprop") and problems("Optimizer") and problems("lr_scheduler")


def _rules() -> list[dict]:
    """The schema's rules across fields: the if/then entries carrying DeepSpeed's wording."""
    return [rule for rule in json.loads(COMMITTED.read_text(encoding="utf-8"))["allOf"] if "x-message" in rule]


def _section(tiny, change: dict, drop=()) -> dict:
    section = copy.deepcopy(tiny["deepspeed"])
    for key in drop:
        section.pop(key, None)
    for key, value in change.items():
        section[key] = {**section[key], **value} if isinstance(value, dict) and isinstance(section.get(key), dict) else value
    return section


# One config per rule that breaks it (refused by DeepSpeedConfig and by the schema, at `path`, in
# the rule's words), each with a neighbour that keeps it (accepted by both: the rule is no wider
# than DeepSpeed's assert).
RULE_CASES = [
    ("bfloat16 and fp16", {"fp16": {"enabled": True}, "bf16": {"enabled": True}}, (),
     "fp16.enabled", {"fp16": {"enabled": True}, "bf16": {"enabled": False}}),
    ("bfloat16 and fp16", {"fp16": {"enabled": True}, "bfloat16": {"enabled": True}}, ("bf16",),
     "fp16.enabled", {"fp16": {"enabled": True}, "bf16": {"enabled": False}, "bfloat16": {"enabled": True}}),
    ("with ZeRO stage 3", {"gradient_allreduce_op": "Sum", "zero_optimization": {"stage": 3}}, (),
     "gradient_allreduce_op", {"gradient_allreduce_op": "Sum", "zero_optimization": {"stage": 2}}),
    ("with DeepCompile", {"gradient_allreduce_op": "sum", "compile": {"deepcompile": True}}, (),
     "gradient_allreduce_op", {"gradient_allreduce_op": "mean", "compile": {"deepcompile": True}}),
    ("with ZenFlow", {"gradient_allreduce_op": "sum", "zero_optimization": {"stage": 2, "zenflow": {}}}, (),
     "gradient_allreduce_op", {"gradient_allreduce_op": "sum", "zero_optimization": {"stage": 2, "zenflow": None}}),
    ("fp16_master_weights_and_grads needs", {"fp16": {"fp16_master_weights_and_grads": True},
                                             "zero_optimization": {"stage": 0}}, (),
     "fp16.fp16_master_weights_and_grads", {"fp16": {"fp16_master_weights_and_grads": True}}),
    ("bf16_master_weights_and_grads needs", {"bf16": {"bf16_master_weights_and_grads": True}}, ("zero_optimization",),
     "bf16.bf16_master_weights_and_grads", {"bf16": {"bf16_master_weights_and_grads": True},
                                            "zero_optimization": {"stage": 1}}),
    ("bf16_optimizer_states needs ZeRO", {"bfloat16": {"bf16_master_weights_and_grads": True, "bf16_optimizer_states": True},
                                          "zero_optimization": {"stage": 0}}, ("bf16",),
     "bfloat16.bf16_optimizer_states", {"bf16": {"bf16_master_weights_and_grads": True, "bf16_optimizer_states": True}}),
    ("needs bf16_master_weights_and_grads", {"bf16": {"bf16_optimizer_states": True}}, (),
     "bf16.bf16_optimizer_states", {"bf16": {"bf16_optimizer_states": False}}),
    ("compute_grad_norm false", {"zero_optimization": {"stage": 3, "compute_grad_norm": False}}, (),
     "zero_optimization.compute_grad_norm", {"zero_optimization": {"stage": 1, "compute_grad_norm": False}}),
    ("partial offload", {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu", "ratio": 0.5}}}, (),
     "zero_optimization.offload_optimizer.ratio",
     {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "ratio": 0.5}}}),
    ("fp16.loss_scale_window", {"fp16": {"enabled": True, "loss_scale_window": 0}}, ("bf16",),
     "fp16.loss_scale_window", {"fp16": {"enabled": True, "loss_scale": 128, "loss_scale_window": 0}}),
    ("fp16.min_loss_scale", {"fp16": {"enabled": True, "loss_scale": 0, "min_loss_scale": 0}}, ("bf16",),
     "fp16.min_loss_scale", {"fp16": {"enabled": False, "min_loss_scale": 0}}),
]


def test_every_rule_has_a_case():
    """A rule the generator adds (from a DeepSpeed assert) needs a case in RULE_CASES."""
    covered = {words for words, *_ in RULE_CASES}
    for rule in _rules():
        assert any(words in rule["x-message"] for words in covered), rule["x-message"]


@pytest.mark.parametrize("words,change,drop,path,kept", RULE_CASES, ids=[c[3] + "-" + c[0] for c in RULE_CASES])
def test_rule_refuses_what_deepspeed_asserts(words, change, drop, path, kept, tiny, deepspeed_config):
    broken = _section(tiny, change, drop)
    with pytest.raises((AssertionError, ValueError)):
        deepspeed_config(broken, 2)
    problems = {p.location: p.message for p in schema_problems({**tiny, "deepspeed": broken})}
    assert words in problems[f"$.deepspeed.{path}"] and "DeepSpeed" in problems[f"$.deepspeed.{path}"], problems
    assert all("DeepSpeed" in message for message in problems.values()), problems  # only rules fired
    neighbour = _section(tiny, kept, drop)
    deepspeed_config(neighbour, 2)
    assert schema_problems({**tiny, "deepspeed": neighbour}) == []


def test_field_names_and_aliases_both_accepted_not_together(tiny, deepspeed_config):
    """pydantic's populate_by_name: DeepSpeed takes `max_live_parameters` as well as its alias
    `stage3_max_live_parameters`, and refuses the two together."""
    for zero in ({"stage": 3, "max_live_parameters": 10}, {"stage": 3, "stage3_max_live_parameters": 10},
                 {"stage": 3, "gather_16bit_weights_on_model_save": True, "prefetch_bucket_size": 10}):
        section = _section(tiny, {"zero_optimization": zero})
        deepspeed_config(section, 2)
        assert schema_problems({**tiny, "deepspeed": section}) == []
    both = _section(tiny, {"zero_optimization": {"stage": 3, "max_live_parameters": 1, "stage3_max_live_parameters": 1}})
    with pytest.raises(ValueError, match="max_live_parameters"):  # pydantic: an extra input
        deepspeed_config(both, 2)
    (problem,) = schema_problems({**tiny, "deepspeed": both})
    assert problem.location == "$.deepspeed.zero_optimization.stage3_max_live_parameters"
    assert "one setting under two names" in problem.message


def test_params_schemas_take_every_default_deepspeed_declares():
    """Typing the params never makes a class's own default invalid (each property's description
    gives the default of the signature it was read from)."""
    import re

    import jsonschema_rs

    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    params = [rule["then"]["properties"]["optimizer"]["properties"]["params"]
              for rule in schema["allOf"] if "x-message" not in rule]
    params += [rule["then"]["properties"]["params"] for rule in schema["properties"]["scheduler"]["allOf"]]
    checked = 0
    for node in params:
        for key, prop in node["properties"].items():
            found = re.search(r"; default (.+?)\.(?: |$)", prop["description"])
            if not found:
                continue
            default = json.loads(found.group(1))
            body = {k: v for k, v in prop.items() if k != "description"}
            assert jsonschema_rs.Draft202012Validator(body).is_valid(default), (node["description"], key, default)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("change", [
    {"checkpoint": {"tag_validation": "fail"}},        # DeepSpeed upper-cases it
    {"gradient_allreduce_op": "Mean"},                 # and lower-cases these
    {"communication_data_type": "Bf16", "seq_parallel_communication_data_type": "FP16"},
    {"torch_autocast": {"enabled": True, "dtype": "torch.bfloat16", "lower_precision_safe_modules": ["torch.nn.Linear"]}},
    {"data_types": {"keep_in_fp32_modules": ["norm"]}},
])
def test_both_accept(change, tiny, deepspeed_config):
    """Spellings DeepSpeed's hand checks accept pass the schema too (no stricter than DeepSpeed)."""
    section = {**copy.deepcopy(tiny["deepspeed"]), **change}
    deepspeed_config(section, 2)
    assert schema_problems({**tiny, "deepspeed": section}) == []
