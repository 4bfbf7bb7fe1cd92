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
does not enumerate in one place are read from the functions that parse them (the keys each one
reads from its dict), so a misspelt key fails here too. `optimizer.type` and `scheduler.type`
are the names DeepSpeed can build, and each one's `params` are the keyword arguments of the class
DeepSpeed builds for it (inspect.signature), with DeepSpeed's own extras, as
engine._configure_basic_optimizer and _scheduler_from_config pass them. Open, with the reason:
only what DeepSpeed hands on unchecked (OPEN_SECTIONS, OPEN_OPTIMIZERS).

Post-processing makes the schema ours: `additionalProperties: false` on every model, a
description on every property, every integer bounded (DeepSpeed's own bounds where it has them,
else the exactly-representable range), titles dropped, deprecated fields kept (DeepSpeed still
accepts them) but marked deprecated with the key that replaces them. `expc build` never imports
DeepSpeed: it reads the generated file.
"""
from __future__ import annotations

import argparse
import ast
import collections.abc
import functools
import inspect
import json
import re
import sys
import textwrap
import warnings
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "src" / "expc" / "schema" / "deepspeed.schema.json"
SAFE_INTEGER = 2**53 - 1

BOOL, NUMBER, STRING = {"type": "boolean"}, {"type": "number"}, {"type": "string"}


def integer(minimum=0, maximum=SAFE_INTEGER):
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def open_object(what, why):
    return {"type": "object", "description": f"{what} Its keys are passed to DeepSpeed as given, "
                                              f"unchecked: {why}."}


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

# `optimizer` and `scheduler`: the names and the `params` of each are filled in from the classes
# DeepSpeed builds (optimizer_rules, scheduler_rules); `params` is closed per type by if/then.
OPTIMIZER = {
    "type": "object", "additionalProperties": False, "required": ["type"],
    "description": "The optimizer DeepSpeed builds: its name and constructor arguments.",
    "properties": {
        "params": {"type": "object", "description": "Keyword arguments of the optimizer's "
                   "constructor, e.g. lr, betas, eps, weight_decay, torch_adam; which ones depends "
                   "on `type` (and, for Adam, Adagrad and Lion, on optimizer offload)."},
        "legacy_fusion": {"type": "boolean", "description": "Use the legacy fused fp16 optimizer path."},
    },
}
SCHEDULER = {
    "type": "object", "additionalProperties": False,
    # DeepSpeed calls the schedule with **params: without them it fails with a TypeError.
    "required": ["type", "params"],
    "description": "The learning-rate schedule DeepSpeed builds: its name and arguments.",
    "properties": {
        "params": {"type": "object", "description": "Keyword arguments of the schedule (without "
                   "the optimizer); which ones depends on `type`."},
    },
}

# Optimizer types DeepSpeed accepts whose params stay open, with the reason.
OPEN_OPTIMIZERS = {
    "muadam": "mup's MuAdam passes **kwargs on to the torch optimizer it wraps (mup is not installed here)",
    "muadamw": "mup's MuAdamW passes **kwargs on to the torch optimizer it wraps (mup is not installed here)",
    "musgd": "mup's MuSGD passes **kwargs on to the torch optimizer it wraps (mup is not installed here)",
}

# torch.optim.lr_scheduler classes DeepSpeed would look up by name but that no JSON config can
# drive: left out of `scheduler.type`, with the reason.
UNUSABLE_SCHEDULERS = {
    "LambdaLR": "its lr_lambda is a Python function",
    "MultiplicativeLR": "its lr_lambda is a Python function",
    "SequentialLR": "it takes scheduler objects",
    "ChainedScheduler": "it takes scheduler objects",
    "ReduceLROnPlateau": "its step() needs the metric, which DeepSpeed's engine.step() does not pass",
    "LRScheduler": "the abstract base class",
}

# Sections DeepSpeed reads by hand from a dict: their keys are those the parsing functions read
# (keys_read), so a key DeepSpeed would silently ignore fails at build time instead.
KEYED_SECTIONS = {
    "aio": "Asynchronous I/O for NVMe offload.",
    "autotuning": "DeepSpeed's autotuner.",
    "checkpoint": "Checkpoint tag validation, universal and node-local checkpoints, writer options.",
    "data_types": "Data types of gradient accumulation, parameters and buffers.",
    "expert_parallel": "Automatic expert parallelism for mixture-of-experts models.",
    "pipeline": "Pipeline-parallel engine options.",
    "torch_autocast": "torch.autocast mixed precision: enabled, dtype, lower-precision-safe modules.",
}

# Sections DeepSpeed hands on without reading their keys itself: open, with the reason.
OPEN_SECTIONS = {
    "data_efficiency": ("Data sampling and routing for data efficiency.",
                        "its curriculum metrics are keyed by names the user chooses"),
    "datastates_ckpt": ("DataStates asynchronous checkpointing.",
                        "DeepSpeed passes the whole section to the datastates library"),
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
    ("WeightQuantConfig", "enabled"): "Quantize the weights.",
    ("WeightQuantConfig", "num_bits"): "Bits per quantized weight.",
    ("WeightQuantConfig", "q_type"): "Symmetric or asymmetric quantization.",
    ("WeightQuantConfig", "q_groups"): "Quantization groups per weight.",
    ("WeightQuantConfig", "quantized_initialization"): "Quantize weights as ZeRO-3 initialises the model: "
                                                       "the quantizer's options, passed on as given.",
    ("WeightQuantConfig", "post_init_quant"): "Quantize modules after initialisation: module name patterns "
                                              "to quantizer options, passed on as given.",
}


def model_sections():
    """Top-level key -> the pydantic model DeepSpeed validates that section with."""
    from deepspeed.comm.config import CommsLoggerConfig
    from deepspeed.compile.config import CompileConfig
    from deepspeed.inference.config import WeightQuantConfig
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
        "weight_quantization": WeightQuantConfig,
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


def keys_read(function, variable: str) -> dict:
    """The keys `function` reads from its dict `variable` (source text, e.g. "aio_dict" or
    "self._config.pipeline"), each with the default it falls back to where one is given.

    Read from the function's source: `v.get(K[, D])`, `v[K]`, `K in v`, `get_*_param(v, K[, D])`,
    with K a string or a module constant.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = function.__globals__

    def constant(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        return NO_DEFAULT

    found: dict = {}
    for node in ast.walk(tree):
        key, default = None, NO_DEFAULT
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "get" and ast.unparse(func.value) == variable:
                key, default = node.args[0], (constant(node.args[1]) if len(node.args) > 1 else NO_DEFAULT)
            elif (isinstance(func, ast.Name) and func.id.startswith("get_") and func.id.endswith("_param")
                  and len(node.args) > 1 and ast.unparse(node.args[0]) == variable):
                key, default = node.args[1], (constant(node.args[2]) if len(node.args) > 2 else NO_DEFAULT)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == variable:
            key = node.slice
        elif (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn))
              and ast.unparse(node.comparators[0]) in (variable, variable + ".keys()")):
            key = node.left
        name = constant(key) if key is not None else None
        if isinstance(name, str):
            if found.get(name, NO_DEFAULT) is NO_DEFAULT:
                found[name] = default
    if not found:
        raise SystemExit(f"{function.__qualname__} no longer reads {variable}; update this script")
    return found


NO_DEFAULT = object()


def _json_default(value):
    """A default as JSON text for a description, or None where it has no JSON form."""
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):  # an Enum member
        value = value.value
    try:
        return json.dumps(value) if value is not NO_DEFAULT and value is not inspect.Parameter.empty else None
    except (TypeError, ValueError):
        return None


def _read_by(function, default) -> str:
    text = f"Read by DeepSpeed's {function.__module__}.{function.__qualname__}"
    shown = _json_default(default)
    return text + (f"; default {shown}." if shown is not None else ".")


def closed(description: str, keys: dict) -> dict:
    """An object of exactly these keys: key -> schema (with its description)."""
    return {"type": "object", "additionalProperties": False, "description": description,
            "properties": dict(sorted(keys.items()))}


def read_keys(*sources) -> dict:
    """(function, variable) pairs -> key -> {"description": where DeepSpeed reads it}."""
    keys = {}
    for function, variable in sources:
        for key, default in keys_read(function, variable).items():
            keys.setdefault(key, {"description": _read_by(function, default)})
    return keys


def keyed_sections() -> dict:
    """Top-level key -> closed schema, for the sections DeepSpeed reads by hand (KEYED_SECTIONS)."""
    from deepspeed.autotuning import constants as autotuning
    from deepspeed.autotuning.config import DeepSpeedAutotuningConfig, get_model_info_config
    from deepspeed.module_inject.auto_ep_config import parse_autoep_config
    from deepspeed.runtime import config as ds_config
    from deepspeed.runtime.model_checkpointing import config as checkpointing
    from deepspeed.runtime.pipe.engine import PipelineEngine
    from deepspeed.runtime.swap_tensor.aio_config import get_aio_config

    autotuning_keys = read_keys((DeepSpeedAutotuningConfig._initialize, "autotuning_dict"),
                                (get_model_info_config, "param_dict"))
    autotuning_keys[autotuning.MODEL_INFO] = closed(
        "What the autotuner knows of the model (it profiles the model when `profile` is set).",
        {key: {"description": _read_by(get_model_info_config, default)}
         for key, default in autotuning.MODEL_INFO_KEY_DEFAULT_DICT.items()})

    checkpoint = read_keys((ds_config.DeepSpeedConfig._initialize_params, "checkpoint_params"),
                           (ds_config.get_checkpoint_tag_validation_mode, "checkpoint_params"),
                           (ds_config.get_checkpoint_parallel_write_pipeline, "checkpoint_params"),
                           (checkpointing.get_checkpoint_config, "checkpoint_dict"),
                           (checkpointing.get_checkpoint_writer_config, "param_dict"))
    checkpoint[ds_config.CHECKPOINT_PARALLEL_WRITE] = closed(
        "Parallel checkpoint writing.",
        read_keys((ds_config.get_checkpoint_parallel_write_pipeline, "par_write_params")))
    checkpoint[checkpointing.CHECKPOINT_WRITER] = {
        "type": ["object", "null"], "additionalProperties": False,
        "description": "The checkpoint writer: its type and I/O buffers; null for the default.",
        "properties": read_keys((checkpointing.get_checkpoint_writer_config, "writer_dict"))}

    # The pipeline engine reads its defaults' keys and one more, use_reentrant.
    pipeline = {key: {"description": _read_by(ds_config.get_pipeline_config, default)}
                for key, default in ds_config.get_pipeline_config({}).items()}
    pipeline.update({key: value for key, value in read_keys(
        (PipelineEngine.__init__, "self._config.pipeline")).items() if key not in pipeline})

    sections = {
        "aio": read_keys((get_aio_config, "aio_dict")),
        "autotuning": autotuning_keys,
        "checkpoint": checkpoint,
        "data_types": read_keys((ds_config.DeepSpeedConfig._initialize_params, "data_types_params")),
        "expert_parallel": read_keys((parse_autoep_config, "param_dict")),
        "pipeline": pipeline,
        "torch_autocast": read_keys(*((function, "param_dict[TORCH_AUTOCAST]") for function in (
            ds_config.get_torch_autocast_enabled, ds_config.get_torch_autocast_dtype,
            ds_config.get_lower_precision_safe_modules))),
    }
    assert set(sections) == set(KEYED_SECTIONS)
    return {key: closed(KEYED_SECTIONS[key], keys) for key, keys in sections.items()}


def partition_config() -> dict:
    """tensor_parallel.partition_config: the keys AutoTPConfig.from_dict reads, and those of each
    of its layer_specs."""
    from deepspeed.module_inject.autotp_config import AutoTPConfig

    keys = read_keys((AutoTPConfig.from_dict, "config_dict"))
    keys["layer_specs"] = {"type": "array", "description": "How to partition the layers whose names "
                           "match each spec's patterns.",
                           "items": closed("One layer spec.", read_keys((AutoTPConfig.from_dict, "spec_dict")))}
    return closed("Custom automatic tensor-parallel partitioning (AutoTPConfig).", keys)


def case_insensitive(names) -> str:
    """A pattern matching any of `names` in any letter case (JSON Schema has no flag for it)."""
    spelled = ("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in name)
               for name in names)
    return "^(?:" + "|".join(spelled) + ")$"


def signature_keys(cls, injected=(), refused=()) -> tuple[dict, list[str]]:
    """The keyword arguments a config may give `cls` (all but the first parameter, those DeepSpeed
    passes itself, and those it refuses): key -> {"description"}, and those without a default."""
    parameters = list(inspect.signature(cls).parameters.values())[1:]
    where = f"{cls.__module__}.{cls.__qualname__}"
    if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in parameters):
        raise SystemExit(f"{where} takes *args or **kwargs: list its type as open in this script")
    keys, required = {}, []
    checks = source_checks(cls)
    for p in parameters:
        if p.name in injected or p.name in refused:
            continue
        shown = _json_default(p.default)
        if p.default is p.empty:
            required.append(p.name)
        note = {"amsgrad": " DeepSpeed's class raises for true: it has no AMSGrad variant."}.get(p.name, "") \
            if checks.get(p.name, {}).get("const") is False else ""
        keys[p.name] = {"description": f"Argument of {where}" + (f"; default {shown}." if shown else ".") + note,
                        **value_schema(cls, p, checks.get(p.name))}
    return keys, required


# Arguments that carry neither an annotation nor a default a type can be read from: (class,
# argument) -> schema, from reading the class (OneCycle multiplies and compares them as numbers).
UNTYPED_ARGUMENTS = {
    ("OneCycle", "cycle_min_lr"): NUMBER,
    ("OneCycle", "cycle_max_lr"): NUMBER,
    ("OneCycle", "cycle_second_step_size"): {"type": ["number", "null"]},
    ("OneCycle", "cycle_second_stair_count"): {"type": ["integer", "null"], "minimum": 0, "maximum": SAFE_INTEGER},
}


def source_checks(cls) -> dict:
    """Argument -> schema for the checks a class makes on its arguments before any op is built,
    read from its source: `X must be a positive integer` (a ValueError) and `does not support the
    AMSGrad variant` (a RuntimeError when amsgrad is true). Its DeepSpeed bases count too."""
    source = ""
    for klass in cls.__mro__:  # a subclass's arguments reach its base's checks (WarmupDecayLR)
        if klass.__module__.startswith("deepspeed."):
            try:
                source += inspect.getsource(klass)
            except (OSError, TypeError):
                pass
    checks = {}
    for name in re.findall(r"(\w+) must be a positive integer", source):
        checks[name] = {"type": "integer", "minimum": 1, "maximum": SAFE_INTEGER,
                        X_MESSAGE: f"{name} must be a positive integer (DeepSpeed's {cls.__name__} raises otherwise)"}
    if "does not support the AMSGrad variant" in source:
        checks["amsgrad"] = {"const": False, X_MESSAGE: f"{cls.__name__}, which DeepSpeed builds for this "
                             "optimizer here, has no AMSGrad variant: it raises for amsgrad true"}
    return checks


def value_schema(cls, parameter, check=None) -> dict:
    """What JSON value an argument takes: DeepSpeed's own check on it, else its annotation, else the
    type of its default (an int default stays any number: torch writes `weight_decay=0` for a
    float), else UNTYPED_ARGUMENTS; {} when nothing says (the value is then passed on as given)."""
    if check:
        return dict(check)
    written = UNTYPED_ARGUMENTS.get((cls.__name__, parameter.name))
    if written:
        return dict(written)
    schema = None
    if parameter.annotation is not parameter.empty:
        schema = annotation_schema(parameter.annotation)
    if schema is None and parameter.default is not parameter.empty:
        schema = default_schema(parameter.default)
    if schema is None:
        return {}
    if parameter.default is None and schema.get("type") != "null":
        schema = nullable(schema)
    return schema


def nullable(schema: dict) -> dict:
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return {**schema, "type": [*types, "null"]} if "null" not in types else schema
    return {"anyOf": [schema, {"type": "null"}]}


def default_schema(value):
    if isinstance(value, bool):
        return dict(BOOL)
    if isinstance(value, (int, float)):
        return dict(NUMBER)
    if isinstance(value, str):
        return dict(STRING)
    if isinstance(value, tuple) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in value):
        return {"type": "array", "prefixItems": [dict(NUMBER) for _ in value], "minItems": len(value),
                "maxItems": len(value)}
    return None


def annotation_schema(annotation):
    """A Python annotation as JSON Schema, for the types a JSON config can hold; None otherwise."""
    import types
    import typing

    import torch

    if annotation is bool:
        return dict(BOOL)
    if annotation is int:
        return integer(-SAFE_INTEGER)
    if annotation is float or annotation is torch.Tensor:
        return dict(NUMBER)  # a tensor-valued argument also takes a plain number
    if annotation is str:
        return dict(STRING)
    if annotation is type(None):
        return {"type": "null"}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        branches = [annotation_schema(arg) for arg in args]
        if any(b is None for b in branches):
            return None
        unique = []
        for branch in branches:
            if branch not in unique:
                unique.append(branch)
        if all(set(b) == {"type"} for b in unique):
            names = []
            for b in unique:
                names += b["type"] if isinstance(b["type"], list) else [b["type"]]
            return {"type": names[0] if len(names) == 1 else names}
        return unique[0] if len(unique) == 1 else {"anyOf": unique}
    if origin is tuple and args and args[-1] is not Ellipsis:
        items = [annotation_schema(arg) for arg in args]
        if any(item is None for item in items):
            return None
        return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if origin in (list, tuple, collections.abc.Iterable, collections.abc.Sequence) and args:
        item = annotation_schema(args[0])
        return None if item is None else {"type": "array", "items": item}
    return None


# DeepSpeed's own optimizer params, popped before the rest reach the optimizer's constructor
# (engine._configure_basic_optimizer and get_optimizer_configuration).
ADAM_EXTRAS = {
    "torch_adam": {"type": "boolean", "description": "DeepSpeed's own switch: build torch.optim.Adam "
                   "or AdamW instead of its fused or CPU Adam, so nothing is compiled at launch."},
    "adam_w_mode": {"type": "boolean", "description": "DeepSpeed's own switch: decoupled weight decay "
                    "(AdamW) when true, the default; classic Adam needs type Adam and false."},
    "fp32_optimizer_states": {"type": ["boolean", "null"], "description": "DeepSpeed's own switch for "
                              "its CPU Adam (optimizer offload): keep the moments in fp32 (the default)."},
}


def optimizer_rules() -> tuple[list[str], list[str], list[tuple]]:
    """(DeepSpeed's own names, torch.optim names, [(condition, type, params keys, required keys)]).

    Mirrors engine._configure_basic_optimizer: DeepSpeed's own names match in any letter case
    (config.py lowers them), any other name is looked up in torch.optim as spelled.
    """
    import torch
    from deepspeed.ops.adagrad import DeepSpeedCPUAdagrad
    from deepspeed.ops.adam import DeepSpeedCPUAdam, FusedAdam
    from deepspeed.ops.lamb import FusedLamb
    from deepspeed.ops.lion import DeepSpeedCPULion, FusedLion
    from deepspeed.runtime import config as ds_config
    from deepspeed.runtime.engine import DeepSpeedEngine

    builder = inspect.getsource(DeepSpeedEngine._configure_basic_optimizer)
    configuration = inspect.getsource(DeepSpeedEngine.get_optimizer_configuration)
    for needed in ("max_grad_norm", "ADAM_W_MODE", "torch.optim.Adagrad", "FusedLamb(", "FusedLion(",
                   "DeepSpeedCPULion(", "DeepSpeedCPUAdagrad(", "getattr(torch.optim"):
        if needed not in builder:
            raise SystemExit(f"_configure_basic_optimizer no longer has {needed!r}; re-read it")
    for needed in ("TORCH_ADAM_PARAM", "'fp32_optimizer_states'", "'foreach'", "'adamw_mode'", "'adam_w_mode'"):
        if needed not in configuration:
            raise SystemExit(f"get_optimizer_configuration no longer has {needed!r}; re-read it")
    refused = ("max_grad_norm",)  # DeepSpeed raises: use gradient_clipping

    def rule(condition, name, cls, injected=(), extras=None):
        keys, required = signature_keys(cls, injected, refused)
        return condition, name, keys | (extras or {}), required

    def params_is(key, value):
        return {"properties": {"params": {"type": "object", "properties": {key: {"const": value}},
                                          "required": [key]}}, "required": ["params"]}

    torch_adam = params_is(ds_config.TORCH_ADAM_PARAM, True)
    classic = params_is(ds_config.ADAM_W_MODE, False)
    rules = []
    for name in (ds_config.ADAM_OPTIMIZER, ds_config.ADAMW_OPTIMIZER):
        # With torch_adam, DeepSpeed pops foreach and passes it back: torch's own keyword.
        if name == ds_config.ADAM_OPTIMIZER:
            rules += [rule({"all": [torch_adam, classic]}, name, torch.optim.Adam, extras=ADAM_EXTRAS),
                      rule({"all": [torch_adam], "not": classic}, name, torch.optim.AdamW, extras=ADAM_EXTRAS)]
        else:
            rules.append(rule({"all": [torch_adam]}, name, torch.optim.AdamW, extras=ADAM_EXTRAS))
        rules += [rule({"not": torch_adam, "cpu": True}, name, DeepSpeedCPUAdam,
                       ("adamw_mode", "fp32_optimizer_states"), ADAM_EXTRAS),
                  rule({"not": torch_adam, "cpu": False}, name, FusedAdam, ("adam_w_mode",), ADAM_EXTRAS)]
    rules += [rule({"cpu": True}, ds_config.ADAGRAD_OPTIMIZER, DeepSpeedCPUAdagrad),
              rule({"cpu": False}, ds_config.ADAGRAD_OPTIMIZER, torch.optim.Adagrad),
              rule({}, ds_config.LAMB_OPTIMIZER, FusedLamb),
              rule({"cpu": True}, ds_config.LION_OPTIMIZER, DeepSpeedCPULion),
              rule({"cpu": False}, ds_config.LION_OPTIMIZER, FusedLion)]

    # Muon builds its param groups from a fixed set of keys and ignores any other: closed to them.
    muon = dict(ADAM_EXTRAS)
    muon_keys = [*DeepSpeedEngine._MUON_HALF_KEYS, *DeepSpeedEngine._ADAM_HALF_KEYS, "muon_lr", "adam_lr", "foreach"]
    if not all(f'"{key}"' in inspect.getsource(DeepSpeedEngine._muon_param_groups) for key in ("muon_lr", "adam_lr")):
        raise SystemExit("_muon_param_groups no longer reads muon_lr and adam_lr; re-read it")
    for key in muon_keys:
        muon.setdefault(key, {"description": "Read by DeepSpeed's Muon param groups "
                              "(engine._muon_param_groups), or by torch Adam with torch_adam."})
    rules.append(({}, ds_config.MUON_OPTIMIZER, muon, []))

    covered = {name for _, name, _, _ in rules} | set(OPEN_OPTIMIZERS)
    if covered != set(ds_config.DEEPSPEED_OPTIMIZERS):
        raise SystemExit(f"DeepSpeed's optimizers changed: {sorted(covered ^ set(ds_config.DEEPSPEED_OPTIMIZERS))}; "
                         "read engine._configure_basic_optimizer and update this script")
    own = set(ds_config.DEEPSPEED_OPTIMIZERS)
    torch_names = [name for name in torch.optim.__all__
                   if isinstance(getattr(torch.optim, name), type) and issubclass(getattr(torch.optim, name),
                                                                                 torch.optim.Optimizer)
                   and getattr(torch.optim, name) is not torch.optim.Optimizer and name.lower() not in own]
    rules += [rule({}, name, getattr(torch.optim, name)) for name in torch_names]
    return list(ds_config.DEEPSPEED_OPTIMIZERS), torch_names, rules


def optimizer_conditions(rules, own_names) -> list[dict]:
    """The rules as if/then on the whole DeepSpeed config (offload is outside `optimizer`)."""
    cpu = {"properties": {"zero_optimization": {"type": "object", "anyOf": [
        {"properties": {"offload_optimizer": {"type": "object", "properties": {
            "device": {"enum": ["cpu", "nvme"]}}, "required": ["device"]}}, "required": ["offload_optimizer"]},
        {"properties": {"cpu_offload": {"const": True}}, "required": ["cpu_offload"]}]}},
        "required": ["zero_optimization"]}
    conditions = []
    for condition, name, keys, required in rules:
        matches = {"pattern": case_insensitive([name])} if name in own_names else {"const": name}
        optimizer = {"type": "object", "properties": {"type": matches}, "required": ["type"]}
        if condition.get("all") or "not" in condition:
            optimizer = {"allOf": [optimizer, *condition.get("all", [])],
                         **({"not": condition["not"]} if "not" in condition else {})}
        when = {"properties": {"optimizer": optimizer}, "required": ["optimizer"]}
        if "cpu" in condition:
            when = {"allOf": [when, cpu if condition["cpu"] else {"not": cpu}]}
        params = closed(f"Keyword arguments for optimizer {name}.", keys)
        then = {"properties": {"optimizer": {"properties": {"params": params},
                                             **({"required": ["params"]} if required else {})}}}
        if required:
            params["required"] = required
        conditions.append({"if": when, "then": then})
    return conditions


def scheduler_rules() -> tuple[list[str], list[dict]]:
    """(names for `scheduler.type`, if/then per name closing its params).

    Mirrors engine._scheduler_from_config: a name of deepspeed.runtime.lr_schedules, else of
    torch.optim.lr_scheduler, exactly as spelled, called as scheduler(optimizer, **params).
    """
    import torch
    from deepspeed.runtime import lr_schedules

    names = list(lr_schedules.VALID_LR_SCHEDULES)
    for name in torch.optim.lr_scheduler.__all__:
        if name in UNUSABLE_SCHEDULERS:
            continue
        if hasattr(lr_schedules, name):  # DeepSpeed would take its own attribute of that name
            raise SystemExit(f"lr_schedules now has {name}; re-read _scheduler_from_config")
        names.append(name)
    missing = set(UNUSABLE_SCHEDULERS) - set(torch.optim.lr_scheduler.__all__)
    if missing:
        raise SystemExit(f"torch.optim.lr_scheduler no longer has {sorted(missing)}; update UNUSABLE_SCHEDULERS")
    conditions = []
    for name in names:
        cls = getattr(lr_schedules, name, None) or getattr(torch.optim.lr_scheduler, name)
        keys, required = signature_keys(cls)
        params = closed(f"Keyword arguments for schedule {name}.", keys)
        if required:
            params["required"] = required
        conditions.append({"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                           "then": {"properties": {"params": params}}})
    return names, conditions


# ---------------------------------------------------------------------------------------------
# Rules across fields that DeepSpeed asserts (DeepSpeedConfig._do_error_check, _initialize_params,
# the models' validators): each refuses the offending field itself, so the error names its JSON
# path, and carries DeepSpeed's own wording in `x-message`, which expc prints instead of the
# schema's generic text. Each rule names the DeepSpeed function whose source must still hold the
# assert's text: a DeepSpeed upgrade that drops or rewords one fails the generator.

X_MESSAGE = "x-message"  # expc's own annotation keyword; JSON Schema validators ignore it
X_UNKNOWN = "x-unknown-key"  # on an object: what DeepSpeed does with keys it does not know there


def _has(path: list[str], schema: dict) -> dict:
    """The condition "the value at `path` (object keys from the DeepSpeed root) matches `schema`"."""
    node = schema
    for key in reversed(path):
        node = {"type": "object", "properties": {key: node}, "required": [key]}
    return node


def _refuse(path: list[str]) -> dict:
    """Refuse the value at `path`, wherever it is given (the `then` of a rule)."""
    node: dict | bool = False
    for key in reversed(path):
        node = {"properties": {key: node}}
    return node


def _stage_in(stages) -> dict:
    """ZeRO's stage is one of `stages` (DeepSpeed's default stage is 0)."""
    if 0 in stages:
        return {"anyOf": [{"not": _has(["zero_optimization", "stage"], {})},
                          _has(["zero_optimization", "stage"], {"enum": list(stages)})]}
    return _has(["zero_optimization", "stage"], {"enum": list(stages)})


def cross_field_rules() -> list[dict]:
    from deepspeed.runtime import config as ds_config
    from deepspeed.runtime import precision_config
    from deepspeed.runtime.zero import config as zero_config

    true = {"const": True}
    bf16_on = {"anyOf": [_has(["bf16", "enabled"], true),  # `bfloat16` is read only without `bf16`
                         {"allOf": [{"not": _has(["bf16"], {})}, _has(["bfloat16", "enabled"], true)]}]}
    sum_op = {"type": "string", "pattern": case_insensitive(["sum"])}
    rules = [
        (ds_config.DeepSpeedConfig._initialize_params, "bfloat16 and fp16 modes cannot be simultaneously enabled",
         "fp16 and bf16 cannot both be enabled (DeepSpeed asserts: bfloat16 and fp16 modes cannot be "
         "simultaneously enabled)",
         {"allOf": [_has(["fp16", "enabled"], true), bf16_on]}, _refuse(["fp16", "enabled"])),
        (ds_config.DeepSpeedConfig._do_error_check, "is not supported with ZeRO stage 3",
         'gradient_allreduce_op "sum" is not supported with ZeRO stage 3 (DeepSpeed raises)',
         {"allOf": [_has(["gradient_allreduce_op"], sum_op), _stage_in([3])]}, _refuse(["gradient_allreduce_op"])),
        (ds_config.DeepSpeedConfig._do_error_check, "is not supported with ZenFlow",
         'gradient_allreduce_op "sum" is not supported with ZenFlow (DeepSpeed raises)',
         {"allOf": [_has(["gradient_allreduce_op"], sum_op),
                    _has(["zero_optimization", "zenflow"], {"type": "object"})]}, _refuse(["gradient_allreduce_op"])),
        (ds_config.DeepSpeedConfig._do_error_check, "is not supported with DeepCompile",
         'gradient_allreduce_op "sum" is not supported with DeepCompile (DeepSpeed raises)',
         {"allOf": [_has(["gradient_allreduce_op"], sum_op), _has(["compile", "deepcompile"], true)]},
         _refuse(["gradient_allreduce_op"])),
        (ds_config.DeepSpeedConfig._do_error_check, "Fp16_master_weights_and_grads is only supported with ZeRO Stage 1, 2, or 3",
         "fp16_master_weights_and_grads needs ZeRO stage 1, 2 or 3 (DeepSpeed asserts)",
         {"allOf": [_has(["fp16", "fp16_master_weights_and_grads"], true), {"not": _stage_in([1, 2, 3])}]},
         _refuse(["fp16", "fp16_master_weights_and_grads"])),
    ]
    for key in ("bf16", "bfloat16"):
        rules += [
            (ds_config.DeepSpeedConfig._do_error_check, "Bf16_master_weights_and_grads is only supported with ZeRO Stage 1, 2, or 3",
             "bf16_master_weights_and_grads needs ZeRO stage 1, 2 or 3 (DeepSpeed asserts)",
             {"allOf": [_has([key, "bf16_master_weights_and_grads"], true), {"not": _stage_in([1, 2, 3])}]},
             _refuse([key, "bf16_master_weights_and_grads"])),
            (ds_config.DeepSpeedConfig._do_error_check, "bf16_optimizer_states is only supported with ZeRO Stage 1, 2, or 3",
             "bf16_optimizer_states needs ZeRO stage 1, 2 or 3 (DeepSpeed asserts)",
             {"allOf": [_has([key, "bf16_optimizer_states"], true), {"not": _stage_in([1, 2, 3])}]},
             _refuse([key, "bf16_optimizer_states"])),
            (ds_config.DeepSpeedConfig._do_error_check, "bf16_optimizer_states requires bf16_master_weights_and_grads",
             "bf16_optimizer_states needs bf16_master_weights_and_grads: true (DeepSpeed asserts)",
             {"allOf": [_has([key, "bf16_optimizer_states"], true),
                        {"not": _has([key, "bf16_master_weights_and_grads"], true)}]},
             _refuse([key, "bf16_optimizer_states"])),
        ]
    rules += [
        (zero_config.DeepSpeedZeroConfig.compute_grad_norm_valid, "compute_grad_norm=false is supported only with ZeRO Stage 1 or 2",
         "compute_grad_norm false needs ZeRO stage 1 or 2 (DeepSpeed raises)",
         {"allOf": [_has(["zero_optimization", "compute_grad_norm"], {"const": False}), {"not": _stage_in([1, 2])}]},
         _refuse(["zero_optimization", "compute_grad_norm"])),
        (zero_config.DeepSpeedZeroConfig.offload_ratio_check, "Partial offloading only supported for ZeRO Stage 3",
         "offload_optimizer.ratio below 1 (partial offload) needs ZeRO stage 3 (DeepSpeed asserts)",
         {"allOf": [_has(["zero_optimization", "offload_optimizer", "ratio"], {"type": "number", "exclusiveMaximum": 1}),
                    {"not": _stage_in([3])}]},
         _refuse(["zero_optimization", "offload_optimizer", "ratio"])),
    ]
    dynamic = {"allOf": [_has(["fp16", "enabled"], true),
                         {"anyOf": [{"not": _has(["fp16", "loss_scale"], {})}, _has(["fp16", "loss_scale"], {"const": 0})]}]}
    for field in ("loss_scale_window", "min_loss_scale"):
        rules.append((precision_config.DeepSpeedFP16Config._validate_dynamic_loss_scale_params,
                      f"fp16.{field} must be > 0 when dynamic loss scaling is enabled",
                      f"fp16.{field} must be above 0 with dynamic loss scaling (loss_scale 0, the default; "
                      "DeepSpeed raises)",
                      dynamic, {"properties": {"fp16": {"properties": {field: {"exclusiveMinimum": 0}}}}}))
    out = []
    for function, text, message, when, then in rules:
        if text not in inspect.getsource(function):
            raise SystemExit(f"{function.__qualname__} no longer says {text!r}; re-read it and update "
                             "cross_field_rules")
        out.append({X_MESSAGE: message, "if": when, "then": then})
    return out


# Single fields that DeepSpeed checks by hand (a validator or a parsing function), beyond what its
# models' types say: (where in the schema, field) -> (DeepSpeed function, text it must hold, extra
# schema, message).
def field_checks() -> list[tuple]:
    from deepspeed.runtime import config as ds_config
    from deepspeed.runtime import precision_config

    modes = list(ds_config.CHECKPOINT_TAG_VALIDATION_MODES)
    # DtypeEnum matches its values and their other spellings; from JSON only the strings can come.
    dtype_names = sorted(name for name in ds_config.DtypeEnum._value2member_map_ if isinstance(name, str))
    checks = [
        (("$defs", "DeepSpeedFP16Config", "loss_scale"), precision_config.DeepSpeedFP16Config,
         "fp16.loss_scale must be >= 0", {"minimum": 0}, "fp16.loss_scale must be 0 (dynamic) or above"),
        (("properties", "checkpoint", "tag_validation"), ds_config.get_checkpoint_tag_validation_mode,
         "tag_validation_mode.upper()", {"type": "string", "pattern": case_insensitive(modes)},
         f"checkpoint.tag_validation must be one of {', '.join(modes)} (any letter case: DeepSpeed "
         "upper-cases it)"),
        (("properties", "checkpoint", "parallel_write", "pipeline_stage"), ds_config.get_checkpoint_parallel_write_pipeline,
         "in [True, False]", dict(BOOL), "checkpoint.parallel_write.pipeline_stage must be true or false"),
        (("properties", "gradient_allreduce_op"), ds_config.get_gradient_allreduce_op, "value.lower()",
         {"type": "string", "pattern": case_insensitive(["mean", "sum"])},
         'gradient_allreduce_op must be "mean" or "sum" (any letter case: DeepSpeed lower-cases it)'),
        (("properties", "torch_autocast", "dtype"), ds_config.get_torch_autocast_dtype, "DtypeEnum(",
         {"enum": dtype_names}, f"torch_autocast.dtype must be one of {', '.join(dtype_names)}"),
        (("properties", "torch_autocast", "enabled"), ds_config.get_torch_autocast_enabled, "TORCH_AUTOCAST_ENABLED",
         dict(BOOL), "torch_autocast.enabled must be true or false"),
        (("properties", "torch_autocast", "lower_precision_safe_modules"), ds_config.get_lower_precision_safe_modules,
         "Expected list of strings", {"type": "array", "items": dict(STRING)},
         "torch_autocast.lower_precision_safe_modules must be a list of module names (strings)"),
        (("properties", "data_types", "keep_in_fp32_modules"), ds_config.DeepSpeedConfig._initialize_params,
         "or a list of name", {"anyOf": [{"const": "auto"}, {"type": "array", "items": dict(STRING)}]},
         'data_types.keep_in_fp32_modules must be "auto" or a list of module name patterns (strings)'),
    ]
    for key in ("COMMUNICATION_DATA_TYPE", "SEQ_PARALLEL_COMMUNICATION_DATA_TYPE"):
        name = getattr(ds_config, key)
        checks.append((("properties", name), ds_config.get_communication_data_type, "val.lower()",
                       {"type": ["string", "null"], "pattern": case_insensitive(["fp16", "bf16", "fp32"])},
                       f'{name} must be "fp16", "bf16" or "fp32" (any letter case: DeepSpeed lower-cases it), '
                       "or null"))
    return checks


def apply_field_checks(schema: dict) -> None:
    for path, function, text, extra, message in field_checks():
        if text not in inspect.getsource(function):
            raise SystemExit(f"{function.__qualname__} no longer holds {text!r}; re-read it and update field_checks")
        node = schema
        for step in path[:-1]:
            node = node[step]
            if "properties" in node and step != "properties":
                node = node["properties"]
        field = node[path[-1]]
        if "type" in extra:
            field.pop("enum", None)  # the pattern says it, in any letter case
        field.update(extra)
        field[X_MESSAGE] = message


def add_field_names(defs: dict, models: dict) -> None:
    """pydantic's populate_by_name: DeepSpeed accepts a field's Python name (`max_live_parameters`)
    as well as its alias (`stage3_max_live_parameters`), but not both at once (the second one is
    then an unknown extra). Both spellings are properties; giving both is refused at the alias."""
    for name, definition in defs.items():
        cls = models.get(name)
        if cls is None or not cls.model_config.get("populate_by_name"):
            continue
        properties = definition.get("properties", {})
        pairs = {}
        for field_name, info in cls.model_fields.items():
            if info.alias and info.alias != field_name and info.alias in properties:
                pairs[field_name] = info.alias
        for field_name, alias in sorted(pairs.items()):
            entry = dict(properties[alias])
            entry["description"] = (f"DeepSpeed's field name for `{alias}`, which it accepts as well: "
                                    f"the same setting. {entry.get('description', '')}").strip()
            properties[field_name] = entry
            definition.setdefault("dependentSchemas", {})[field_name] = {
                X_MESSAGE: f"`{alias}` and `{field_name}` are one setting under two names: give one "
                           "(DeepSpeed refuses both)",
                "properties": {alias: False}}

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
    own, torch_optimizers, rules = optimizer_rules()
    optimizer = json.loads(json.dumps(OPTIMIZER))
    optimizer["properties"]["type"] = {
        "type": "string",
        "description": f"Optimizer name: DeepSpeed's own ({', '.join(own)}; in any letter case) or "
                       f"a torch.optim class, spelled exactly ({', '.join(torch_optimizers)}).",
        # DeepSpeed lowers its own names before matching them; an enum cannot say "any case".
        "if": {"pattern": case_insensitive(own)}, "else": {"enum": own + torch_optimizers}}
    properties[constants.OPTIMIZER] = optimizer
    scheduler = json.loads(json.dumps(SCHEDULER))
    schedules, scheduler["allOf"] = scheduler_rules()
    scheduler["properties"]["type"] = {"enum": schedules, "description": "Schedule name: one of "
                                       "DeepSpeed's lr_schedules or a torch.optim.lr_scheduler class."}
    properties[constants.SCHEDULER] = scheduler
    root_conditions = optimizer_conditions(rules, own)
    defs["TPTrainingConfig"]["properties"]["partition_config"] = {
        "anyOf": [partition_config(), {"type": "null"}],
        "description": defs["TPTrainingConfig"]["properties"]["partition_config"]["description"]}
    properties["activation_checkpointing"] = _keyed_section(
        "Activation checkpointing, for models that call deepspeed.checkpointing.", ACTIVATION_CHECKPOINTING,
        "deepspeed.runtime.activation_checkpointing.config", "ACT_CHKPT_DEFAULT")
    properties["flops_profiler"] = _keyed_section(
        "DeepSpeed's FLOPs profiler.", FLOPS_PROFILER, None, None)
    properties.update(keyed_sections())
    for key, (what, why) in OPEN_SECTIONS.items():
        properties[key] = open_object(what, why)
    from deepspeed.runtime.config import _REMOVED_TOP_LEVEL_CONFIG_KEYS

    removed = set(properties) & set(_REMOVED_TOP_LEVEL_CONFIG_KEYS)
    if removed:  # DeepSpeed refuses these outright: so must the schema
        raise SystemExit(f"DeepSpeed removed {sorted(removed)}; drop them from this script's tables")
    properties[SEQUENCE_PARALLEL_SIZE] = sequence_parallel_size()
    add_field_names(defs, models)
    # DeepSpeed reads the keys it knows from these objects and ignores any other without a word;
    # expc refuses the others and says so (validate.py words the message).
    ignored = "it reads only the keys it knows here and passes over any other"
    for key in [*KEYED_SECTIONS, "activation_checkpointing", "flops_profiler", "optimizer", "scheduler"]:
        properties[key][X_UNKNOWN] = ignored
    from deepspeed.runtime.config import _REMOVED_ZERO_CONFIG_KEYS

    defs["DeepSpeedZeroConfig"]["x-removed-keys"] = dict(sorted(_REMOVED_ZERO_CONFIG_KEYS.items()))

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"DeepSpeed config (generated from deepspeed {deepspeed.__version__})",
        "description": "A DeepSpeed config as deepspeed.initialize reads it. Generated by "
                       "scripts/generate_deepspeed_schema.py; do not edit by hand.",
        "type": "object",
        "additionalProperties": False,
        X_UNKNOWN: ignored,
        "x-removed-keys": dict(sorted(_REMOVED_TOP_LEVEL_CONFIG_KEYS.items())),
        "properties": dict(sorted(properties.items())),
        "allOf": root_conditions + cross_field_rules(),
        "$defs": dict(sorted(defs.items())),
    }
    apply_field_checks(schema)
    return schema, problems


SEQUENCE_PARALLEL_SIZE = "sequence_parallel_size"


def sequence_parallel_size() -> dict:
    """DeepSpeedConfig divides the world by this key (without a model-parallel unit) before its
    batch assertion; nothing else in the config reads it."""
    from deepspeed.runtime.config import DeepSpeedConfig

    if f'"{SEQUENCE_PARALLEL_SIZE}" in config' not in inspect.getsource(DeepSpeedConfig.__init__):
        raise SystemExit("DeepSpeedConfig.__init__ no longer reads sequence_parallel_size; re-read it")
    return {"description": "Sequence-parallel degree: DeepSpeed's data-parallel world is the world "
                           "size divided by it, in the batch arithmetic (expc checks that it divides "
                           "the world).", **integer(1)}


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
