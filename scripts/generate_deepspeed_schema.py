#!/usr/bin/env python
"""Installed DeepSpeed's config models -> src/expc/schema/deepspeed.schema.json.

Run by developers after upgrading DeepSpeed (a test fails, naming this command, when the committed
schema no longer matches the installed version):

    .venv/bin/python scripts/generate_deepspeed_schema.py

Sections that DeepSpeed parses with pydantic models (ZeRO, bf16/fp16, monitors, comms logger,
compile, timers, tensor parallel, hybrid engine) are generated from those models: their fields,
types, bounds, defaults, and the field docstrings as descriptions. Top-level keys that DeepSpeed
reads by hand (batch sizes, optimizer, scheduler, clipping...) come from the table below, checked
against deepspeed.runtime.constants so a renamed key fails here. Sections whose keys DeepSpeed
does not enumerate in one place (pipeline, elasticity, autotuning...) are objects with open keys.

Post-processing makes the schema ours: `additionalProperties: false` on every model, a
description on every property, every integer bounded (DeepSpeed's own bounds where it has them,
else the exactly-representable range), titles dropped, deprecated fields kept (DeepSpeed still
accepts them) but marked deprecated with the key that replaces them. `expc build` never imports
DeepSpeed: it reads the generated file.
"""
from __future__ import annotations

import argparse
import ast
import functools
import inspect
import json
import sys
import textwrap
import warnings
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "src" / "expc" / "schema" / "deepspeed.schema.json"
SAFE_INTEGER = 2**53 - 1

BOOL, NUMBER, STRING = {"type": "boolean"}, {"type": "number"}, {"type": "string"}


def integer(minimum=0, maximum=SAFE_INTEGER):
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def open_object(what):
    return {"type": "object", "description": f"{what} Its keys are passed to DeepSpeed as given; "
                                              "expc does not check them."}


# Top-level keys DeepSpeed reads without a pydantic model: constant name in
# deepspeed.runtime.constants -> (schema, description).
HAND_WRITTEN = {
    "TRAIN_BATCH_SIZE": (integer(1), "Global batch in sequences per optimizer step: micro batch x "
                         "gradient accumulation x world size (expc checks the product)."),
    "TRAIN_MICRO_BATCH_SIZE_PER_GPU": (integer(1), "Sequences per process per forward/backward pass."),
    "GRADIENT_ACCUMULATION_STEPS": (integer(1), "Micro batches accumulated before each optimizer step."),
    "STEPS_PER_PRINT": (integer(1), "DeepSpeed prints its own progress line every this many steps."),
    "GRADIENT_CLIPPING": ({"type": "number", "minimum": 0}, "Clip the global gradient norm to this "
                          "value; 0 disables clipping."),
    "PRESCALE_GRADIENTS": (BOOL, "Scale gradients before the all-reduce instead of after it."),
    "GRADIENT_PREDIVIDE_FACTOR": ({"type": "number", "exclusiveMinimum": 0},
                                  "Divide gradients by this factor before the all-reduce and by "
                                  "world size / factor after it."),
    "WALL_CLOCK_BREAKDOWN": (BOOL, "Time forward, backward and step separately and print the breakdown."),
    "MEMORY_BREAKDOWN": (BOOL, "Print memory use at points of the training step."),
    "DUMP_STATE": (BOOL, "Print DeepSpeed's internal state after initialisation."),
    "DISABLE_ALLGATHER": (BOOL, "Use broadcasts instead of all-gathers (legacy)."),
    "DISABLE_PYTHON_GC": (BOOL, "Turn off Python's cyclic garbage collector during training."),
    "COMMUNICATION_DATA_TYPE": ({"enum": ["fp16", "bf16", "fp32", "FP16", "BF16", "FP32", None]},
                                "Data type for gradient all-reduce; null follows the training precision."),
    "SEQ_PARALLEL_COMMUNICATION_DATA_TYPE": ({"enum": ["fp16", "bf16", "fp32", "FP16", "BF16", "FP32"]},
                                             "Data type for sequence-parallel communication."),
    "ZERO_ALLOW_UNTESTED_OPTIMIZER": (BOOL, "Allow ZeRO with an optimizer DeepSpeed has not tested with it."),
    "ZERO_FORCE_DS_CPU_OPTIMIZER": (BOOL, "With optimizer offload, require DeepSpeed's CPU optimizer."),
    "DATALOADER_DROP_LAST": (BOOL, "Drop the last incomplete batch in DeepSpeed's own data loader."),
    "GRADIENT_ALLREDUCE_OP": ({"enum": ["mean", "sum", "MEAN", "SUM"]},
                              "How gradients are combined across data-parallel ranks."),
    "MANAGED_GRADIENT_ACCUMULATION": (BOOL, "Let DeepSpeed count micro batches and step at the "
                                      "accumulation boundary."),
    "LOG_LEVEL": ({"type": ["string", "null"]}, "DeepSpeed's logger level, e.g. \"info\" or \"warning\"."),
    "VOCABULARY_SIZE": ({"type": ["integer", "null"], "minimum": 1, "maximum": SAFE_INTEGER},
                        "Vocabulary size, used by some DeepSpeed features to pad embeddings."),
    "USE_DATA_BEFORE_EXPERT_PARALLEL": (BOOL, "Order data-parallel groups before expert-parallel ones."),
}

OPTIMIZER = {
    "type": "object", "additionalProperties": False, "required": ["type"],
    "description": "The optimizer DeepSpeed builds: its name and constructor arguments.",
    "properties": {
        "type": {"type": "string", "minLength": 1, "description": "Optimizer name, e.g. \"AdamW\", "
                 "\"Adam\", \"Lamb\", \"SGD\" (case-insensitive for DeepSpeed's own optimizers)."},
        "params": {"type": "object", "description": "Keyword arguments of the optimizer's "
                   "constructor, e.g. lr, betas, eps, weight_decay, torch_adam."},
        "legacy_fusion": {"type": "boolean", "description": "Use the legacy fused fp16 optimizer path."},
    },
}
SCHEDULER = {
    "type": "object", "additionalProperties": False, "required": ["type"],
    "description": "The learning-rate schedule DeepSpeed builds: its name and arguments.",
    "properties": {
        "type": {"type": "string", "minLength": 1, "description": "Schedule name, e.g. \"WarmupLR\", "
                 "\"WarmupDecayLR\", \"WarmupCosineLR\", \"OneCycle\", \"LRRangeTest\"."},
        "params": {"type": "object", "description": "Keyword arguments of the schedule."},
    },
}

# Sections DeepSpeed parses from a dict of known keys (no pydantic model): module, defaults dict
# or key prefix, description.
ACTIVATION_CHECKPOINTING = {
    "partition_activations": (BOOL, "Partition checkpointed activations across model-parallel ranks."),
    "number_checkpoints": ({"type": ["integer", "null"], "minimum": 1, "maximum": SAFE_INTEGER},
                           "Number of checkpoints, for contiguous memory allocation."),
    "contiguous_memory_optimization": (BOOL, "Copy checkpointed activations into one contiguous buffer."),
    "synchronize_checkpoint_boundary": (BOOL, "Synchronize the device at each checkpoint boundary."),
    "profile": (BOOL, "Time the forward and backward of checkpointed blocks."),
    "cpu_checkpointing": (BOOL, "Keep checkpointed activations in CPU memory."),
}
FLOPS_PROFILER = {
    "enabled": (BOOL, "Profile one step's FLOPs, latency and parameters per module."),
    "recompute_fwd_factor": ({"type": "number", "minimum": 0},
                             "Extra forward passes recomputed by activation checkpointing, as a fraction."),
    "profile_step": (integer(1), "The training step to profile."),
    "module_depth": (integer(-1), "How deep in the module tree to report; -1 for all levels."),
    "top_modules": (integer(1), "How many top modules to list in the aggregated report."),
    "detailed": (BOOL, "Print the per-module profile, not only the summary."),
    "output_file": ({"type": ["string", "null"]}, "Write the profile to this file; null prints it."),
}

OPEN_SECTIONS = {
    "checkpoint": "Checkpoint tag validation, universal and node-local checkpoints, writer options.",
    "data_types": "Data types of gradient accumulation, parameters and buffers.",
    "data_efficiency": "Data sampling and routing for data efficiency.",
    "expert_parallel": "Mixture-of-experts parallel groups.",
    "pipeline": "Pipeline-parallel engine options.",
    "datastates_ckpt": "DataStates asynchronous checkpointing.",
    "torch_autocast": "torch.autocast mixed precision: enabled, dtype, lower-precision-safe modules.",
    "autotuning": "DeepSpeed's autotuner.",
    "aio": "Asynchronous I/O for NVMe offload.",
    "weight_quantization": "Post-training weight quantization.",
}


# Fields whose models carry no docstring for them: (model, key as written in a config) -> text.
WRITTEN_DESCRIPTIONS = {
    ("DeepSpeedZeroLeafModuleConfig", "classes"): "Module class names treated as ZeRO-3 leaf modules.",
    ("DeepSpeedZeroLeafModuleConfig", "names"): "Module names treated as ZeRO-3 leaf modules.",
    ("DeepSpeedZeroLeafModuleConfig", "name_suffixes"): "Module name suffixes treated as ZeRO-3 leaf modules.",
    ("DeepSpeedZeroConfig", "pipeline_loading_checkpoint"): "Load checkpoints for the pipeline engine "
                                                             "under ZeRO-3.",
    ("CommsLoggerConfig", "enabled"): "Log collective communication calls.",
    ("CommsLoggerConfig", "prof_all"): "Profile every collective operation.",
    ("CommsLoggerConfig", "prof_ops"): "Names of the collective operations to profile when prof_all is false.",
    ("CommsLoggerConfig", "verbose"): "Print every logged operation as it happens.",
    ("CommsLoggerConfig", "debug"): "Add the calling function's name to each logged operation.",
    ("TPConfig", "tp_group"): "Tensor-parallel process group (set from code, not from a config file).",
    ("TPTrainingConfig", "injection_policy_tuple"): "Injection policy for automatic tensor parallelism "
                                                    "(set from code).",
    ("TPTrainingConfig", "kernel_inject"): "Replace modules with DeepSpeed's fused inference kernels.",
    ("HybridEngineConfig", "enabled"): "Switch between training and inference engines (RLHF).",
    ("HybridEngineConfig", "max_out_tokens"): "Longest generation, in tokens, for the inference engine.",
    ("HybridEngineConfig", "inference_tp_size"): "Tensor-parallel degree of the inference engine.",
    ("HybridEngineConfig", "release_inference_cache"): "Free the inference KV cache after generation.",
    ("HybridEngineConfig", "pin_parameters"): "Keep gathered parameters pinned between generations.",
    ("HybridEngineConfig", "tp_gather_partition_size"): "Partitions gathered at once for tensor parallelism.",
    ("HybridEngineConfig", "enable_cuda_graph"): "Capture generation in CUDA graphs.",
}


def model_sections():
    """Top-level key -> the pydantic model DeepSpeed validates that section with."""
    from deepspeed.comm.config import CommsLoggerConfig
    from deepspeed.compile.config import CompileConfig
    from deepspeed.monitor.config import CometConfig, CSVConfig, TensorBoardConfig, WandbConfig
    from deepspeed.runtime.config import HybridEngineConfig
    from deepspeed.runtime.precision_config import DeepSpeedBF16Config, DeepSpeedFP16Config
    from deepspeed.runtime.tensor_parallel.config import TPTrainingConfig
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    return {
        "zero_optimization": DeepSpeedZeroConfig,
        "bf16": DeepSpeedBF16Config,
        "fp16": DeepSpeedFP16Config,
        "tensorboard": TensorBoardConfig,
        "wandb": WandbConfig,
        "csv_monitor": CSVConfig,
        "comet": CometConfig,
        "comms_logger": CommsLoggerConfig,
        "compile": CompileConfig,
        "tensor_parallel": TPTrainingConfig,
        "hybrid_engine": HybridEngineConfig,
    }


def field_docstrings(cls) -> dict[str, str]:
    """The string literal under each annotated field of a class body (the models' own docs)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    # A config spells a field by its alias when it has one (stage3_prefetch_bucket_size).
    for name, info in getattr(cls, "model_fields", {}).items():
        if info.alias and name in docs:
            docs[info.alias] = docs[name]
    for (model, key), text in WRITTEN_DESCRIPTIONS.items():
        if model == cls.__name__:
            docs.setdefault(key, text)
    return docs


def model_schema(cls) -> dict:
    """pydantic's JSON Schema of one model, tolerating the callables in DeepSpeed's field extras."""
    import pydantic.json_schema
    from pydantic_core import to_jsonable_python

    original = pydantic.json_schema.to_jsonable_python
    # A deprecated field's extras carry a conversion function; keep its place, drop the function.
    pydantic.json_schema.to_jsonable_python = functools.partial(to_jsonable_python,
                                                                fallback=lambda value: None)
    try:
        with warnings.catch_warnings():
            # A torch.dtype default cannot be written as JSON; pydantic leaves it out, as we want.
            warnings.simplefilter("ignore", pydantic.json_schema.PydanticJsonSchemaWarning)
            return cls.model_json_schema(by_alias=True, schema_generator=_generator())
    finally:
        pydantic.json_schema.to_jsonable_python = original


@functools.cache
def _generator():
    import pydantic.json_schema

    class Generator(pydantic.json_schema.GenerateJsonSchema):
        def is_instance_schema(self, schema):
            # Fields typed as a Python class (torch.dtype, a module): from JSON only a name fits.
            return {"type": "string"}

    return Generator


def all_models(root) -> dict[str, type]:
    found, stack = {}, [root]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            found.setdefault(sub.__name__, sub)
            stack.append(sub)
    return found


def tidy(node, docs_by_model: dict, model_name: str | None, problems: list[str], where: str):
    """Make one schema node ours, recursively (see the module docstring)."""
    if isinstance(node, list):
        return [tidy(item, docs_by_model, model_name, problems, where) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items() if k not in ("title", "new_param_fn", "set_new_param")}
    if node.get("format") == "path":
        del node["format"]  # not a Draft 2020-12 format; the type already says string
    if node.get("type") == "integer" or (isinstance(node.get("type"), list) and "integer" in node["type"]):
        node.setdefault("minimum", -SAFE_INTEGER)
        node.setdefault("maximum", SAFE_INTEGER)
        if "exclusiveMinimum" in node and node["minimum"] == -SAFE_INTEGER:
            del node["minimum"]
    if node.get("deprecated") is True:
        replacement = node.pop("new_param", "")
        message = node.pop("deprecated_msg", "")
        note = "Deprecated" + (f": use `{replacement}` instead" if replacement else "") + \
               (f". {message}" if message else "") + "."
        node["description"] = (node.get("description", "") + " " + note).strip()
    if "properties" in node:
        node.setdefault("additionalProperties", False)
        docs = docs_by_model.get(model_name, {})
        properties = {}
        for key, value in node["properties"].items():
            value = tidy(value, docs_by_model, None, problems, f"{where}.{key}")
            if "description" not in value or not value["description"].strip():
                description = docs.get(key) or _referenced_description(value, docs_by_model)
                if description:
                    value = {"description": description, **value}
                else:
                    problems.append(f"{where}.{key}")
            properties[key] = value
        node["properties"] = properties
    for key in ("anyOf", "oneOf", "allOf", "items", "additionalProperties", "prefixItems"):
        if key in node and not isinstance(node[key], bool):
            node[key] = tidy(node[key], docs_by_model, None, problems, where)
    return node


def _referenced_description(value: dict, docs_by_model: dict) -> str | None:
    """A field whose type is another model, without its own docstring: that model's docstring."""
    refs = [value.get("$ref")] + [v.get("$ref") for v in value.get("anyOf", []) if isinstance(v, dict)]
    for ref in refs:
        if ref:
            return docs_by_model.get("__doc__:" + ref.rsplit("/", 1)[-1])
    return None


def generate() -> tuple[dict, list[str]]:
    """Return (schema, properties that still lack a description)."""
    import deepspeed
    from deepspeed.runtime import constants
    from deepspeed.runtime.config_utils import DeepSpeedConfigModel

    models = all_models(DeepSpeedConfigModel)
    docs_by_model: dict = {}
    for name, cls in models.items():
        docs_by_model[name] = field_docstrings(cls)
        if cls.__doc__ and cls.__doc__.strip():
            docs_by_model["__doc__:" + name] = " ".join(cls.__doc__.split())

    problems: list[str] = []
    defs: dict = {}
    properties: dict = {}
    for key, cls in model_sections().items():
        schema = model_schema(cls)
        for name, definition in schema.pop("$defs", {}).items():
            defs[name] = tidy(definition, docs_by_model, name, problems, f"$defs.{name}")
        schema = tidy(schema, docs_by_model, cls.__name__, problems, key)
        schema["description"] = docs_by_model.get("__doc__:" + cls.__name__) or f"DeepSpeed's {key} section."
        defs[cls.__name__] = schema
        properties[key] = {"$ref": f"#/$defs/{cls.__name__}", "description": schema["description"]}

    # DeepSpeed still reads `bfloat16` as the old name of `bf16`.
    properties["bfloat16"] = {"$ref": properties["bf16"]["$ref"], "deprecated": True,
                              "description": "Deprecated: use `bf16` instead. Same keys as `bf16`."}
    properties["timers"] = {
        "type": "object", "additionalProperties": False,
        "description": "DeepSpeed's timers.",
        "properties": {"throughput": {"$ref": "#/$defs/DeepSpeedThroughputTimerConfig",
                                      "description": "Throughput timer: samples per second in DeepSpeed's logs."}},
    }
    from deepspeed.utils.config import DeepSpeedThroughputTimerConfig
    timer = model_schema(DeepSpeedThroughputTimerConfig)
    defs["DeepSpeedThroughputTimerConfig"] = tidy(timer, docs_by_model, "DeepSpeedThroughputTimerConfig",
                                                  problems, "timers.throughput")

    for constant, (schema, description) in HAND_WRITTEN.items():
        properties[getattr(constants, constant)] = {"description": description, **schema}
    properties[constants.OPTIMIZER] = OPTIMIZER
    properties[constants.SCHEDULER] = SCHEDULER
    properties["activation_checkpointing"] = _keyed_section(
        "Activation checkpointing, for models that call deepspeed.checkpointing.", ACTIVATION_CHECKPOINTING,
        "deepspeed.runtime.activation_checkpointing.config", "ACT_CHKPT_DEFAULT")
    properties["flops_profiler"] = _keyed_section(
        "DeepSpeed's FLOPs profiler.", FLOPS_PROFILER, None, None)
    for key, what in OPEN_SECTIONS.items():
        properties[key] = open_object(what)
    from deepspeed.runtime.config import _REMOVED_TOP_LEVEL_CONFIG_KEYS

    removed = set(properties) & set(_REMOVED_TOP_LEVEL_CONFIG_KEYS)
    if removed:  # DeepSpeed refuses these outright: so must the schema
        raise SystemExit(f"DeepSpeed removed {sorted(removed)}; drop them from this script's tables")

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"DeepSpeed config (generated from deepspeed {deepspeed.__version__})",
        "description": "A DeepSpeed config as deepspeed.initialize reads it. Generated by "
                       "scripts/generate_deepspeed_schema.py; do not edit by hand.",
        "type": "object",
        "additionalProperties": False,
        "properties": dict(sorted(properties.items())),
        "$defs": dict(sorted(defs.items())),
    }
    return schema, problems


def _keyed_section(description, table, module, defaults_name):
    if module:  # the keys must be exactly those DeepSpeed's defaults name
        import importlib

        known = set(getattr(importlib.import_module(module), defaults_name))
        if known != set(table):
            raise SystemExit(f"{module}.{defaults_name} keys changed: {sorted(known ^ set(table))}; "
                             "update the table in this script")
    return {"type": "object", "additionalProperties": False, "description": description,
            "properties": {k: {"description": d, **s} for k, (s, d) in table.items()}}


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file; write nothing")
    args = parser.parse_args()
    schema, problems = generate()
    if problems:
        print("properties without a description (add one to the tables here):", *problems, sep="\n  ",
              file=sys.stderr)
        return 1
    text = render(schema)
    if args.check:
        same = OUTPUT.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{OUTPUT.name} is stale")
        return 0 if same else 1
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(OUTPUT.parents[3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
