"""Derived quantities of a manifest: parameter count, tokens, compute, memory per device.

Input: a manifest (or document) as a plain dict. Output: numbers, and one small dataclass for the
memory breakdown. The one estimator: the build-time memory-fit check, `expc diff`'s derived
figures and `expc plan` all read it. Plain arithmetic; no torch. What depends on the model family
(parameter count, tensor sizes, activations) comes from its arch (expc.archs). Formulas, their
sources and how close they come to what DeepSpeed holds: docs/plan.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from expc.archs import arch_of

GIB = 1024 ** 3

# The PyTorch caching allocator reserves more than the tensors it holds (blocks split and cached
# between sizes): the fit check adds this share of the allocated figure on top (docs/plan.md).
FRAGMENTATION = 0.10

# Model FLOPs utilisation assumed when no earlier run of the same model and hardware measured
# one: what well-tuned dense training reaches on A100/H100 class GPUs without recomputation.
DEFAULT_MFU = 0.4

# DeepSpeed's defaults for the keys the buffers read (deepspeed/runtime/zero/config.py).
ZERO_DEFAULTS = {"reduce_bucket_size": 500_000_000, "allgather_bucket_size": 500_000_000,
                 "contiguous_gradients": True, "stage3_prefetch_bucket_size": 50_000_000,
                 "stage3_max_live_parameters": 1_000_000_000, "stage3_param_persistence_threshold": 100_000,
                 "stage3_model_persistence_threshold": 2 ** 63 - 1}

# Bytes per element of the weights and gradients that live on the device, by training precision.
_ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def parameter_count(model: dict) -> int:
    """All parameters of the model section's arch (expc.archs), frozen or not."""
    return arch_of(model).parameters(model)


def trainable_parameters(manifest: dict) -> int:
    """Parameters the optimizer updates: all of them, or with an adapter its own weights (LoRA's
    A and B of each targeted layer, DoRA's magnitudes, the modules saved in full)."""
    model, adapter = manifest["model"], manifest.get("adapter")
    if not adapter:
        return parameter_count(model)
    layers = arch_of(model).linear_layers(model) or {}
    count = 0
    for name in lora_targets(adapter, layers):
        fan_in, fan_out, times = layers[name]
        count += times * (adapter["r"] * (fan_in + fan_out) + (fan_out if adapter["use_dora"] else 0))
    for name in adapter["modules_to_save"]:
        if name in layers:
            fan_in, fan_out, times = layers[name]
            count += times * fan_in * fan_out
    return count


def held_parameters(manifest: dict) -> int:
    """Parameters the trained model holds: the base's, and with an adapter its own weights too
    (LoRA's A and B, and PEFT's trainable copy of each module saved in full, sit beside the
    frozen base)."""
    n = parameter_count(manifest["model"])
    return n + trainable_parameters(manifest) if manifest.get("adapter") else n


def lora_targets(adapter: dict, layers: dict) -> list[str]:
    """The linear layers (by leaf name) that `target_modules` selects; "all-linear" is every one
    but the output head, as PEFT reads it."""
    targets = adapter["target_modules"]
    if targets == "all-linear":
        return [name for name in layers if name != "lm_head"]
    return [name for name in layers if any(t == name or t.endswith("." + name) for t in targets)]


def sequence_length(manifest: dict) -> int:
    """Tokens per sequence: the data's max_length for instruction data (the longest a batch can
    be), else the model's own context (GPT's block_size)."""
    data = manifest.get("data") or {}
    if data.get("source") == "jsonl":
        return data["max_length"]
    return arch_of(manifest["model"]).dims(manifest["model"]).context


def world_size(manifest: dict) -> int:
    """Training processes in all: nodes x processes per node (all of them data-parallel)."""
    hardware = manifest["hardware"]
    return hardware["nodes"] * hardware["procs_per_node"]


def tokens_per_step(manifest: dict) -> int:
    """Tokens consumed by one optimizer step: global batch (sequences) x sequence length (an
    upper bound for instruction data, whose examples are shorter)."""
    return manifest["deepspeed"]["train_batch_size"] * sequence_length(manifest)


def total_tokens(manifest: dict) -> int:
    """Tokens consumed by the whole run: tokens per step x train.max_steps."""
    return tokens_per_step(manifest) * manifest["train"]["max_steps"]


def recompute_factor(manifest: dict) -> float:
    """Device FLOPs per model FLOP: 1, or with activation checkpointing 1 + the forward's share
    (each layer's forward runs again in the backward pass; the forward is a third of 6N)."""
    if not activation_checkpointing(manifest):
        return 1.0
    return 1 + forward_flops_per_token(manifest) / flops_per_token(manifest)


def forward_flops_per_token(manifest: dict) -> float:
    """The forward pass's FLOPs per token: 2 per matmul parameter and a third of attention's
    term, i.e. a third of the full 6N + 12 * layers * width * sequence."""
    model = manifest["model"]
    arch = arch_of(model)
    return arch.flops_per_token(model, sequence_length(manifest)) / 3


def activation_checkpointing(manifest: dict) -> bool:
    """Whether the manifest turns activation checkpointing on (through its arch's field)."""
    return arch_of(manifest["model"]).checkpointing(manifest["model"])


def flops_per_token(manifest: dict) -> int:
    """Training FLOPs per token, forward and backward: 6N + 12 * layers * width * sequence.

    6N counts the matrix multiplies (2 forward + 4 backward per parameter); N leaves out
    parameters that are only looked up (GPT's position embeddings, an untied token embedding).
    The second term is attention's QK^T and AV products, which have no parameters (PaLM paper,
    appendix B; nanoGPT's estimate_mfu uses the same form). With an adapter the frozen weights
    skip their weight-gradient matmul: 4 per frozen parameter, 6 per trainable one.
    """
    model = manifest["model"]
    arch = arch_of(model)
    full = arch.flops_per_token(model, sequence_length(manifest))
    if not manifest.get("adapter"):
        return full
    frozen = parameter_count(model) - arch.lookup_parameters(model)
    return full - 2 * frozen + 6 * trainable_parameters(manifest)


def total_flops(manifest: dict) -> int:
    """Training FLOPs of the whole run: flops_per_token x total_tokens."""
    return flops_per_token(manifest) * total_tokens(manifest)


def device_hours(manifest: dict, mfu: float = DEFAULT_MFU) -> float:
    """Device-hours (summed over all devices) at the given model FLOPs utilisation.

    total_flops / (hardware.peak_tflops x 1e12 x mfu) seconds, in hours. Divide by world_size
    for wall-clock hours.
    """
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    return total_flops(manifest) / (manifest["hardware"]["peak_tflops"] * 1e12 * mfu) / 3600


def precision(manifest: dict) -> str:
    """"bf16" or "fp16" when the DeepSpeed section enables it, else "fp32"."""
    for name in ("bf16", "fp16"):
        section = precision_section(manifest["deepspeed"], name)
        if isinstance(section, dict) and section.get("enabled") is True:
            return name
    return "fp32"


def precision_section(ds: dict, name: str):
    """The section DeepSpeed reads for `name`: `bf16`, else its old name `bfloat16`."""
    if name == "bf16" and ds.get("bf16") is None:
        return ds.get("bfloat16")
    return ds.get(name)


def zero_setting(manifest: dict, key: str):
    """A key of `deepspeed.zero_optimization`, or DeepSpeed's default for it."""
    zero = manifest["deepspeed"].get("zero_optimization") or {}
    if key == "overlap_comm":  # DeepSpeed's default depends on the stage: on for 3 only
        value = zero.get(key)
        return zero.get("stage", 0) == 3 if value is None else value
    return zero.get(key, ZERO_DEFAULTS.get(key))


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory per device in GiB. `total` = allocated (parameters + gradients + optimizer +
    activations + buffers) + the fragmentation allowance; that is what must fit the device.
    `host` is what offload puts in host memory per process, `nvme` on NVMe; neither is in `total`."""

    parameters: float
    gradients: float
    optimizer: float
    activations: float
    buffers: float = 0.0
    fragmentation: float = 0.0
    host: float = 0.0
    nvme: float = 0.0
    host_per_node: float = 0.0
    activation_checkpointing: bool = False
    buffer_parts: tuple[tuple[str, float], ...] = ()  # (what, GiB) of each buffer in `buffers`

    @property
    def model_states(self) -> float:
        return self.parameters + self.gradients + self.optimizer

    @property
    def allocated(self) -> float:
        return self.model_states + self.activations + self.buffers

    @property
    def total(self) -> float:
        return self.allocated + self.fragmentation

    @property
    def offloaded(self) -> float:
        return self.host + self.nvme

    def describe(self) -> str:
        """One line, e.g. 'parameters 2.4 + gradients 2.4 + optimizer 2.3 + activations 8.0 +
        buffers 0.9 + fragmentation 1.6 = 17.6 GiB'."""
        parts = " + ".join(f"{name} {value:.1f}" for name, value in (
            ("parameters", self.parameters), ("gradients", self.gradients), ("optimizer", self.optimizer),
            ("activations", self.activations), ("buffers", self.buffers), ("fragmentation", self.fragmentation)))
        tail = ""
        if self.host:
            tail += f" (plus {self.host:.1f} GiB offloaded to host memory)"
        if self.nvme:
            tail += f" (plus {self.nvme:.1f} GiB offloaded to NVMe)"
        return f"{parts} = {self.total:.1f} GiB{tail}"


def memory_per_device(manifest: dict) -> MemoryEstimate:
    """Model states under ZeRO partitioning and offload, activations of one micro batch,
    DeepSpeed's buffers, and the fragmentation allowance. Formulas and sources: docs/plan.md.

    Model states follow the ZeRO paper (Rajbhandari et al. 2019, section 3): with mixed precision
    (bf16/fp16) each parameter costs 2 bytes of weights, 2 of gradients and K = 12 of optimizer
    state (fp32 master copy, Adam's two moments); in fp32 the weights are their own master copy
    at stage 0 (K = 8), but ZeRO keeps an fp32 copy of its partition all the same (K = 12,
    measured). SGD keeps one moment instead of two. Stage 1 divides the optimizer state by the
    world size, stage 2 the gradients too, stage 3 the weights too, except the tensors below
    `stage3_param_persistence_threshold`, which every rank keeps whole. With an adapter only the
    trainable parameters carry gradients and optimizer state, and the adapter's
    weights are held beside the frozen base.

    Activations: the arch's bytes per token per layer (a GPT block: Korthikanti et al. 2022's 34
    x width at 16 bits with fused attention, 32 without dropout; the Llama layout counted op by
    op, and what LoRA's layers keep), twice that in
    fp32, plus the fp32 logits and their gradient; with activation checkpointing each layer keeps
    only its input (2 x width bytes per token) and one layer is recomputed at a time.

    Buffers: the gradient reduce bucket (`reduce_bucket_size` elements, two with overlap_comm),
    and at stage 3 the gathered parameters (the tensor being used plus what is prefetched, at
    most `stage3_max_live_parameters`).
    """
    ds, model = manifest["deepspeed"], manifest["model"]
    arch = arch_of(model)
    n, trainable = held_parameters(manifest), trainable_parameters(manifest)
    world = world_size(manifest)
    mixed = precision(manifest)
    element = _ELEMENT_BYTES[mixed]
    zero = ds.get("zero_optimization") or {}
    stage = zero.get("stage", 0)
    tensors = _tensors(manifest, arch)

    moments = 1 if str((ds.get("optimizer") or {}).get("type", "")).lower() == "sgd" else 2
    master = 4 if mixed != "fp32" or stage >= 1 else 0
    optimizer_bytes = 4 * moments + master

    persistent = 0
    if stage >= 3 and tensors:
        threshold = zero_setting(manifest, "stage3_param_persistence_threshold")
        persistent = min(sum(e * times for e, times in tensors if e < threshold),
                         zero_setting(manifest, "stage3_model_persistence_threshold"))
    parameters = n * element / (world if stage >= 3 else 1) + persistent * element
    gradients = trainable * element / (world if stage >= 2 else 1)
    optimizer = trainable * optimizer_bytes / (world if stage >= 1 else 1)

    host = nvme = 0.0

    def offload(key: str, amount: float) -> None:
        nonlocal host, nvme
        if (zero.get(key) or {}).get("device") == "nvme":
            nvme += amount
        else:
            host += amount

    if stage >= 1 and offloaded(zero, "offload_optimizer"):
        # The optimizer state moves to the host, with the fp32 gradients of the partition it updates.
        offload("offload_optimizer", optimizer + trainable * 4 / world)
        optimizer = 0.0
    if stage >= 3 and offloaded(zero, "offload_param"):
        offload("offload_param", parameters - persistent * element)
        parameters = persistent * element

    activations = _activations(manifest, arch, element)

    parts = []
    if stage >= 1:
        # in the training precision (measured at every stage, fp32 and bf16); two with overlap_comm
        # at stages 1 and 2, whose double buffering stage 3 does not have
        if zero_setting(manifest, "contiguous_gradients") or stage == 3:
            count = 2 if zero_setting(manifest, "overlap_comm") and stage < 3 else 1
            parts.append(("reduce bucket", count * zero_setting(manifest, "reduce_bucket_size") * element))
        else:  # the bucket's gradients are flattened into one temporary when it is reduced
            parts.append(("reduce bucket", min(zero_setting(manifest, "reduce_bucket_size"), trainable) * element))
    if stage >= 3:
        largest = max((e for e, _ in tensors), default=0) if tensors else 0
        gathered = min(largest + zero_setting(manifest, "stage3_prefetch_bucket_size"),
                       zero_setting(manifest, "stage3_max_live_parameters"), n - persistent)
        parts.append(("gathered parameters", max(gathered, 0) * element))
    buffers = sum(b for _, b in parts)

    allocated = parameters + gradients + optimizer + activations + buffers
    procs = manifest["hardware"].get("procs_per_node", 1)
    return MemoryEstimate(parameters / GIB, gradients / GIB, optimizer / GIB, activations / GIB, buffers / GIB,
                          FRAGMENTATION * allocated / GIB, host / GIB, nvme / GIB, host * procs / GIB,
                          activation_checkpointing(manifest), tuple((name, b / GIB) for name, b in parts))


def _activations(manifest: dict, arch, element: int) -> float:
    """Bytes of activations one micro batch keeps for its backward pass."""
    model = manifest["model"]
    dims = arch.dims(model)
    micro = manifest["deepspeed"].get("train_micro_batch_size_per_gpu", 1)
    tokens = micro * sequence_length(manifest)
    scale = element / 2  # the per-layer figures are at 16 bits
    per_layer = (arch.activations_per_token_layer(model) + _adapter_activation_bytes(manifest, arch)) * tokens * scale
    logits = 2 * 4 * tokens * dims.vocab  # fp32 logits and their gradient
    if arch.checkpointing(model):
        # Korthikanti et al.'s full recomputation: 2 x width bytes per token at each layer's
        # input, and one layer's activations alive while it is recomputed.
        return dims.layers * 2 * dims.width * tokens * scale + per_layer + logits
    return dims.layers * per_layer + logits


def _tensors(manifest: dict, arch) -> list[tuple[int, int]] | None:
    """Every parameter tensor the run holds as (elements, how many): the arch's, and an adapter's
    (LoRA's A and B per targeted layer, DoRA's magnitudes, PEFT's copies of modules saved in full)."""
    base = arch.tensors(manifest["model"]) if arch.tensors else None
    adapter = manifest.get("adapter")
    if base is None or not adapter:
        return base
    layers = arch.linear_layers(manifest["model"]) or {}
    found = list(base)
    for name in lora_targets(adapter, layers):
        fan_in, fan_out, times = layers[name]
        found += [(adapter["r"] * fan_in, times), (adapter["r"] * fan_out, times)]
        if adapter["use_dora"]:
            found.append((fan_out, times))
    for name in adapter["modules_to_save"]:
        if name in layers:
            fan_in, fan_out, times = layers[name]
            found.append((fan_in * fan_out, times))
    return found


def _adapter_activation_bytes(manifest: dict, arch) -> float:
    """What LoRA adds per token per layer at 16 bits: each targeted layer keeps its dropped-out
    input (2 x fan_in, when the adapter has dropout, and the 1-byte mask, counted as half of
    that) and A's output for B (2 x r)."""
    adapter = manifest.get("adapter")
    layers = arch.linear_layers(manifest["model"]) if adapter else None
    if not layers:
        return 0.0
    n_layers = arch.dims(manifest["model"]).layers
    total = 0.0
    for name in lora_targets(adapter, layers):
        fan_in, _, times = layers[name]
        per_module = 2 * adapter["r"] + (2.5 * fan_in if adapter["dropout"] > 0 else 0)
        total += per_module * times / n_layers  # the head (times 1) spread over the layers
    return total


def offloaded(zero: dict, key: str) -> bool:
    """Whether `zero_optimization.<key>` (offload_optimizer, offload_param) moves states off the device."""
    section = zero.get(key)
    return isinstance(section, dict) and section.get("device") in ("cpu", "nvme")


def step_seconds(manifest: dict, mfu: float = DEFAULT_MFU) -> float:
    """Seconds per optimizer step at the given model FLOPs utilisation: tokens per step x FLOPs
    per token / (world size x peak x mfu). Communication and offload transfers are not modelled
    apart; the MFU stands for them."""
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    return (tokens_per_step(manifest) * flops_per_token(manifest)
            / (world_size(manifest) * manifest["hardware"]["peak_tflops"] * 1e12 * mfu))
