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
from expc.validate import manifest_schema, schema_problems

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


def test_schema_rules_hold_everywhere():
    """Every property described, every integer bounded, every model closed to unknown keys."""
    schema = manifest_schema()
    undescribed, unbounded, open_models = [], [], []
    for path, node in walk(schema):
        if {"if", "then", "else", "not"} & set(path.split("/")):
            continue  # conditions on values already defined elsewhere
        for name, prop in node.get("properties", {}).items():
            if isinstance(prop, dict) and not prop.get("description"):
                undescribed.append(f"{path}/properties/{name}")
        types = node.get("type")
        if types == "integer" or (isinstance(types, list) and "integer" in types):
            low = "minimum" in node or "exclusiveMinimum" in node
            high = "maximum" in node or "exclusiveMaximum" in node
            if not (low and high):
                unbounded.append(path)
        if "properties" in node and node.get("additionalProperties") is not False:
            open_models.append(path)
    assert undescribed == [] and unbounded == [] and open_models == []


def test_generator_names_its_command_in_help():
    out = subprocess.run([sys.executable, str(ROOT / GENERATOR), "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--check" in out
