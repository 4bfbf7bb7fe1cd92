"""Stage 5, validate: a document -> the same document, or every problem with it at once.

First the JSON Schema (Draft 2020-12, `schema/manifest.schema.json`, whose `deepspeed` section is
`schema/deepspeed.schema.json`, generated from DeepSpeed's own config models, with the rules across
fields that DeepSpeed asserts); then the semantic rules a schema cannot express, because they need
the hardware: batch arithmetic over the data-parallel world, head/width divisibility, precision against the
hardware, torch's Adam on CPU, no "auto" in the DeepSpeed section, and whether the run fits in
device memory.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache

from expc.errors import ExpcError, Problem, did_you_mean, json_path
from expc.schema import manifest_schema


@lru_cache(maxsize=None)
def _validator():
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator(manifest_schema())


def validate(document, origin=None, fit_check: bool = True) -> None:
    """Raise ExpcError listing every schema and semantic problem; return None when valid.

    `origin(path) -> "file:line"` (optional) names where a value was set, for the message.
    `fit_check=False` leaves out the memory-fit rule (for `expc plan`).
    """
    problems = schema_problems(document)
    if not problems:  # semantic rules assume the shapes the schema guarantees
        problems = semantic_problems(document, fit_check)
    problems = sorted(problems + auto_problems(document), key=lambda p: p.location or "")
    if problems:
        if origin:
            problems = [Problem(p.message, p.location, origin(p.location)) for p in problems]
        raise ExpcError(problems)


# A streamed sweep (compile/streamed.py) checks each distinct top-level field once, alone, with
# the schema less its `required`; this holds while the schema's top level has no other rule
# across fields (_field_validator refuses to run otherwise): a document is then valid exactly
# when it has every required field and each field is valid alone.
_ROOT_KEYWORDS = {"$schema", "$id", "title", "description", "type", "properties", "additionalProperties",
                  "required", "$defs"}


def field_is_valid(key: str, value) -> bool:
    """Whether one top-level field of a manifest, alone, breaks no schema rule and holds no "auto"."""
    return _field_validator().is_valid({key: value}) and not auto_problems({key: value})


def has_required_fields(keys) -> bool:
    return _required_fields() <= set(keys)


@lru_cache(maxsize=None)
def _required_fields() -> frozenset:
    return frozenset(manifest_schema().get("required", ()))


@lru_cache(maxsize=None)
def _field_validator():
    import jsonschema_rs

    schema = manifest_schema()
    if set(schema) - _ROOT_KEYWORDS:
        raise RuntimeError(f"the manifest schema's top level has grown {sorted(set(schema) - _ROOT_KEYWORDS)}: "
                           "check that a field can still be validated alone, then add it to _ROOT_KEYWORDS")
    return jsonschema_rs.Draft202012Validator({k: v for k, v in schema.items() if k != "required"})


def check_loaded(manifest, where: str) -> None:
    """A manifest read back from its file, its digest already checked, must still have the
    shape the compiler writes. A hand-made file named by its own digest passes the digest check;
    without this its missing or mistyped fields would reach the trainer as a KeyError."""
    problems = schema_problems(manifest)
    if problems:
        raise ExpcError([Problem(p.message, p.location) for p in problems],
                        context=f"{where}, which is named by its digest but is not a manifest expc builds")


def schema_problems(document) -> list[Problem]:
    """Every JSON Schema problem, as messages a user can act on, sorted by JSON path."""
    return sorted(_problems(document, _validator(), manifest_schema(), []), key=lambda p: p.location or "")


def _problems(instance, validator, schema: dict, prefix: list) -> list[Problem]:
    problems = []
    for error in validator.iter_errors(instance):
        path = [*prefix, *error.instance_path]
        kind = type(error.kind).__name__
        if error.instance == "auto" and path[:1] == ["deepspeed"]:
            continue  # auto_problems says why "auto" is refused, wherever it is
        if kind == "AdditionalProperties":
            node = _schema_at(schema, list(error.schema_path)[:-1])
            for name in error.kind.unexpected:
                problems.append(Problem(_unknown_key(name, node, path), json_path([*path, name])))
        elif kind == "Required":
            missing = error.kind.property
            problems.append(Problem(f"missing required key {missing!r}", json_path([*path, missing])))
        elif kind == "AnyOf" and error.instance is not None and (
                branch := _only_non_null(_schema_at(schema, list(error.schema_path)[:-1]))):
            # An optional section (a model or null) that is not null: say what is wrong inside it,
            # rather than that it matches neither branch.
            problems += _problems(error.instance, _branch_validator(json.dumps(branch, sort_keys=True)),
                                  branch, path)
        elif rule := _rule_message(schema, list(error.schema_path)):
            # A rule DeepSpeed asserts (the schema's own x-message): its words, not the schema's.
            problems.append(Problem(f"{rule}; got {json.dumps(error.instance)}", json_path(path)))
        elif kind == "Enum":
            problems.append(Problem(_not_one_of(error.instance, error.kind.options), json_path(path)))
        else:
            problems.append(Problem(error.message, json_path(path)))
    return problems


def _unknown_key(name: str, node: dict, path: list) -> str:
    """Why a key is refused: DeepSpeed removed it (its own words), or DeepSpeed would ignore it
    (where the schema says DeepSpeed ignores keys it does not know: the top level and the sections
    it reads by hand), or it is not a key at all there; with a did-you-mean when one is close."""
    allowed = node.get("properties", {})
    removed = node.get("x-removed-keys", {})
    if name in removed:
        return f"unknown key {name!r}: {removed[name]}"
    hint = MISPLACED_KEYS.get(name) if path[:1] == ["model"] else None
    if hint:
        return f"unknown key {name!r}: {hint}"
    if "x-unknown-key" not in node:
        return f"unknown key {name!r}" + did_you_mean(name, allowed)
    if name.startswith(("_", "#")) or "comment" in name.lower():
        return (f"unknown key {name!r}: DeepSpeed ignores it (a comment, read by nothing); write comments "
                "in the spec as // ... instead")
    return (f"unknown key {name!r}: DeepSpeed ignores it ({node['x-unknown-key']}), so it would do "
            "nothing" + did_you_mean(name, allowed))


def _rule_message(start: dict, schema_path: list) -> str | None:
    """The deepest `x-message` on the way to the failing keyword: the schema's wording of a rule
    DeepSpeed asserts (scripts/generate_deepspeed_schema.py writes them)."""
    root, node, found = manifest_schema(), start, None
    for step in schema_path:
        if isinstance(node, dict) and "$ref" in node and step not in node:
            node = _resolve(root, node["$ref"])
        if step == "$ref" and isinstance(node, dict):
            node = _resolve(root, node["$ref"])
        elif (isinstance(node, dict) and step in node) or (
                isinstance(node, list) and isinstance(step, int) and step < len(node)):
            node = node[step]
        else:
            break
        if isinstance(node, dict) and "x-message" in node:
            found = node["x-message"]
    return found


# Names other tools give LoRA settings in their model config; here they live in `adapter`.
MISPLACED_KEYS = {name: f"LoRA settings live in the `adapter` section: adapter.{field} (expc.adapters.lora)"
              for name, field in (("lora_rank", "r"), ("lora_r", "r"), ("lora_alpha", "alpha"),
                                  ("lora_dropout", "dropout"), ("lora_target_modules", "target_modules"),
                                  ("lora_module_path", "target_modules"), ("target_modules", "target_modules"))}


def _not_one_of(value, options) -> str:
    """Every allowed value (jsonschema-rs names two and counts the rest), and the closest one,
    compared without case (DeepSpeed matches its optimizer names that way)."""
    import difflib

    shown = ", ".join(dict.fromkeys(json.dumps(o) for o in options))  # DeepSpeed's enums repeat values
    hint = ""
    if isinstance(value, str):
        names = {o.lower(): o for o in options if isinstance(o, str)}
        close = difflib.get_close_matches(value.lower(), list(names), n=1, cutoff=0.6)
        hint = f' (did you mean "{names[close[0]]}"?)' if close else ""
    return f"{json.dumps(value)} is not one of {shown}{hint}"


def _only_non_null(node: dict) -> dict | None:
    branches = [b for b in node.get("anyOf", []) if b != {"type": "null"}]
    if len(branches) != 1:
        return None
    branch = branches[0]
    return _resolve(manifest_schema(), branch["$ref"]) if set(branch) == {"$ref"} else branch


@lru_cache(maxsize=None)
def _branch_validator(branch_text: str):
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator({**json.loads(branch_text), "$defs": manifest_schema()["$defs"]})


def _schema_at(start: dict, schema_path: list) -> dict:
    root = manifest_schema()
    node = start
    for step in schema_path:
        if isinstance(node, dict) and "$ref" in node and step not in node:
            node = _resolve(root, node["$ref"])
        node = node[step] if not isinstance(node, list) else node[int(step)]
        if isinstance(node, dict) and "$ref" in node and len(node) == 1:
            node = _resolve(root, node["$ref"])
    return node if isinstance(node, dict) else {}


def _resolve(root: dict, ref: str) -> dict:
    node = root
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


# The top-level fields the rules across fields read, and the only ones semantic_problems is
# shown: members of a big sweep that share these share its answer (compile/streamed.py), however
# their seeds or tags differ. A rule that needs another field adds it here.
SEMANTIC_FIELDS = ("adapter", "data", "deepspeed", "hardware", "model", "train")


def semantic_problems(manifest, fit_check: bool = True) -> list[Problem]:
    """Rules across fields. Every rule appends; none stops the others."""
    manifest = {k: manifest[k] for k in SEMANTIC_FIELDS if k in manifest}
    problems: list[Problem] = []
    hw, model, ds = manifest["hardware"], manifest["model"], manifest["deepspeed"]

    world = hw["nodes"] * hw["procs_per_node"]
    batch_keys = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
    missing = [k for k in batch_keys if k not in ds]
    if missing:
        for key in missing:
            problems.append(Problem(f"missing {key!r}: all three batch sizes are spelled out so the "
                                    "arithmetic is checked before launch", json_path(["deepspeed", key])))
    # DeepSpeed's data-parallel world: the world divided by the sequence-parallel degree (the
    # ranks of one sequence-parallel group share each sample).
    sp = ds.get("sequence_parallel_size", 1)
    if world % sp:
        problems.append(Problem(f"sequence_parallel_size {sp} does not divide the world size {world} "
                                f"({hw['nodes']} node(s) x {hw['procs_per_node']} processes)",
                                json_path(["deepspeed", "sequence_parallel_size"])))
    elif not missing and all(isinstance(ds[k], int) for k in batch_keys):
        micro, accum, total = ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]
        data_parallel = world // sp
        if micro * accum * data_parallel != total:
            world_text = (f"world size {world} ({hw['nodes']} node(s) x {hw['procs_per_node']} processes)"
                          if sp == 1 else
                          f"data-parallel world {data_parallel} (world size {world} = {hw['nodes']} node(s) x "
                          f"{hw['procs_per_node']} processes, / sequence_parallel_size {sp})")
            problems.append(Problem(
                f"train_batch_size is {total}, but micro batch {micro} x accumulation {accum} x "
                f"{world_text} = {micro * accum * data_parallel}", json_path(["deepspeed", "train_batch_size"])))

    problems += _model_problems(manifest)

    from expc.estimate import precision_section

    for precision in ("bf16", "fp16"):
        section = precision_section(ds, precision)
        if isinstance(section, dict) and section.get("enabled") is True and not hw[precision]:
            key = precision if precision in ds else "bfloat16"
            problems.append(Problem(f"{precision} is enabled but hardware {hw['name']!r} does not "
                                    f"support {precision}", json_path(["deepspeed", key, "enabled"])))

    expected_backend = {"cpu": "gloo", "cuda": "nccl"}[hw["accelerator"]]
    if hw["accelerator"] == "cpu" and hw["backend"] != "gloo":
        problems.append(Problem(f"backend {hw['backend']!r} does not run on CPU; use {expected_backend!r}",
                                json_path(["hardware", "backend"])))

    optimizer = ds.get("optimizer") or {}
    if (hw["accelerator"] == "cpu" and optimizer.get("type", "").lower() in ("adam", "adamw")
            and (optimizer.get("params") or {}).get("torch_adam") is not True):
        # Without it DeepSpeed builds its FusedAdam or CPUAdam, JIT-compiled on every launch.
        problems.append(Problem(f'optimizer {optimizer["type"]!r} on CPU needs "torch_adam": true, else '
                                "DeepSpeed compiles its own Adam (about a minute) at every launch; set it "
                                "in the optimizer params, as expc.optim.adamw does",
                                json_path(["deepspeed", "optimizer", "params", "torch_adam"])))

    # The lib asserts this too, but `--set train.max_steps=...` changes the leaf after the lib ran.
    warmup = ((ds.get("scheduler") or {}).get("params") or {}).get("warmup_num_steps")
    if isinstance(warmup, int) and warmup >= manifest["train"]["max_steps"]:
        problems.append(Problem(f"the schedule warms up for {warmup} steps, but train.max_steps is "
                                f"{manifest['train']['max_steps']}: the run would end before warm-up does",
                                json_path(["deepspeed", "scheduler", "params", "warmup_num_steps"])))

    problems += _silent_no_ops(manifest)

    if (manifest["data"]["source"] in ("stdlib", "text", "synthetic") and "vocab_size" in model
            and model["vocab_size"] < 256):
        problems.append(Problem(f"vocab_size {model['vocab_size']} is too small for a byte-level "
                                f"corpus (needs 256)", json_path(["model", "vocab_size"])))

    if fit_check:
        problems += _memory_problems(manifest)
    return problems


# Schedules whose length DeepSpeed reads from total_num_steps. One longer than train.max_steps
# never finishes: the run ends before the learning rate has decayed (a stale length, the classic
# after changing max_steps alone). A shorter one holds the floor for the last steps, a choice some
# make on purpose (and real configs are written that way), so it is allowed.
_SCHEDULE_LENGTH = ("WarmupCosineLR", "WarmupDecayLR")


def _silent_no_ops(manifest) -> list[Problem]:
    """Settings that would build and then do nothing, or something else than they say."""
    problems = []
    ds, train = manifest["deepspeed"], manifest["train"]
    scheduler = ds.get("scheduler") or {}
    params = scheduler.get("params") or {}
    total = params.get("total_num_steps")
    if scheduler.get("type") in _SCHEDULE_LENGTH and isinstance(total, int) and total > train["max_steps"]:
        problems.append(Problem(f"the {scheduler['type']} schedule is {total} steps long but train.max_steps is "
                                f"{train['max_steps']}: the run would end before the learning rate has decayed; "
                                "the lib's schedules follow train.max_steps (set that, not total_num_steps)",
                                json_path(["deepspeed", "scheduler", "params", "total_num_steps"])))
    lr = ((ds.get("optimizer") or {}).get("params") or {}).get("lr")
    peak = params.get("warmup_max_lr")
    if isinstance(lr, (int, float)) and isinstance(peak, (int, float)) and not math.isclose(lr, peak, rel_tol=1e-9):
        problems.append(Problem(f"the scheduler warms up to warmup_max_lr {peak:g}, which replaces the "
                                f"optimizer's lr {lr:g}: DeepSpeed trains at {peak:g}; make them equal (the "
                                "lib's schedules take warmup_max_lr from the lr knob)",
                                json_path(["deepspeed", "scheduler", "params", "warmup_max_lr"])))
    source = manifest["data"]["source"]
    if train.get("sample_tokens") and source in ("tokens", "jsonl"):
        problems.append(Problem(f"train.sample_tokens writes a text sample at the end, but data source "
                                f"{source!r} has no text to decode it with ("
                                + ("token ids without a tokenizer" if source == "tokens" else
                                   "instruction data: a fine-tune answers prompts") + "): set it to 0",
                                json_path(["train", "sample_tokens"])))
    return problems


def _model_problems(manifest) -> list[Problem]:
    """The arch's own rules, then how it fits with the data and the adapter."""
    from expc.archs import arch_of
    from expc.estimate import lora_targets

    model, data, adapter = manifest["model"], manifest["data"], manifest.get("adapter")
    arch = arch_of(model)
    problems = arch.problems(model)
    tokenized = arch.name == "hf_causal_lm"  # the arch whose tokenizer comes with it
    if data["source"] == "jsonl" and not tokenized:
        problems.append(Problem(f'data source "jsonl" is tokenized by the base model\'s tokenizer; arch '
                                f'"{arch.name}" has none (use a Hugging Face base: expc.models.hf(...))',
                                json_path(["data", "source"])))
    if tokenized and data["source"] != "jsonl":
        problems.append(Problem(f'arch "hf_causal_lm" trains on instruction data (data source "jsonl"), '
                                f'not "{data["source"]}"', json_path(["data", "source"])))
    if adapter and not arch.adapters:
        problems.append(Problem(f'arch "{arch.name}" cannot take an adapter: it trains every weight from '
                                "scratch (adapters are for pretrained bases, e.g. hf_causal_lm); remove "
                                "`adapter`", json_path(["adapter"])))
    layers = arch.linear_layers(model) if adapter and arch.adapters else None
    if layers is not None:  # the module names are known without torch: check every target now
        if adapter["target_modules"] != "all-linear":
            for i, target in enumerate(adapter["target_modules"]):
                if not lora_targets({**adapter, "target_modules": [target]}, layers):
                    problems.append(Problem(_no_such_module(target, layers, arch, model),
                                            json_path(["adapter", "target_modules", i])))
        for i, name in enumerate(adapter["modules_to_save"]):
            if name.rpartition(".")[2] not in (*layers, *arch.other_modules):
                problems.append(Problem(_no_such_module(name, layers, arch, model),
                                        json_path(["adapter", "modules_to_save", i])))
    if data["source"] == "jsonl" and tokenized and data["max_length"] > model["config"]["max_position_embeddings"]:
        problems.append(Problem(f"max_length {data['max_length']} is longer than the base's "
                                f"max_position_embeddings ({model['config']['max_position_embeddings']})",
                                json_path(["data", "max_length"])))
    return problems


def _no_such_module(name: str, layers: dict, arch, model: dict) -> str:
    real = [*layers, *arch.other_modules]
    return (f"no module named {name!r} in the base ({model['config']['model_type']}){did_you_mean(name.rpartition('.')[2], real)}; "
            f"its layers: {', '.join(real)}")


def _memory_problems(manifest) -> list[Problem]:
    """The estimated memory per device (expc.estimate) must fit the device. The hints are the
    changes that, applied to a copy and estimated again, do fit (expc.fit)."""
    from expc.estimate import memory_per_device
    from expc.fit import fitting_changes

    hw, ds = manifest["hardware"], manifest["deepspeed"]
    zero = ds.get("zero_optimization") if isinstance(ds.get("zero_optimization"), dict) else {}
    if not isinstance(zero.get("stage", 0), int) or not isinstance(ds.get("train_micro_batch_size_per_gpu", 1), int):
        return []  # the schema reports these
    memory = memory_per_device(manifest)
    if memory.total <= hw["device_memory_gib"]:
        return []
    changes = fitting_changes(manifest) if not _batch_problems(manifest) else []
    if changes:
        hint = "\n  these fit (each re-estimated, the global batch kept; `expc plan` shows the step time):" + "".join(
            f"\n    {c.summary}: {c.memory.total:.1f} GiB ({c.set_flags()})" for c in changes)
    else:
        hint = ("\n  no single change fits (a smaller micro batch, a higher ZeRO stage, activation checkpointing, "
                "offload, up to 16x the devices): see `expc plan`")
    return [Problem(f"the run does not fit in device memory: an estimated {memory.total:.1f} GiB per device, but "
                    f"{hw['name']!r} has {hw['device_memory_gib']:g} GiB\n"
                    f"  {memory.describe()}{hint}", json_path(["hardware", "device_memory_gib"]))]


def _batch_problems(manifest) -> bool:
    """Whether the batch sizes are missing or do not multiply out (the hints rescale them)."""
    ds, hw = manifest["deepspeed"], manifest["hardware"]
    keys = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
    if not all(isinstance(ds.get(k), int) for k in keys):
        return True
    return (ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * hw["nodes"]
            * hw["procs_per_node"] != ds["train_batch_size"])


def auto_problems(document) -> list[Problem]:
    """DeepSpeed's "auto" (filled in at launch) is refused anywhere in the DeepSpeed section."""
    if not isinstance(document, dict) or "deepspeed" not in document:
        return []
    return [Problem('"auto" is not allowed: every value is spelled out so the manifest is exactly '
                    "what runs", json_path(path)) for path in _auto_values(document["deepspeed"], ["deepspeed"])]


def _auto_values(node, path):
    if node == "auto":
        yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _auto_values(value, [*path, key])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _auto_values(value, [*path, index])
