"""Derived quantities of a manifest: parameter count, tokens, compute, memory per device.

Input: a manifest (or document) as a plain dict. Output: numbers, and one small dataclass for the
memory breakdown. Used by the build-time memory-fit check, by `expc diff` and by reports. Plain
arithmetic; no torch. What depends on the model family (parameter count, sizes) comes from its
arch (expc.archs). Formulas and their sources are in docs/compiler.md ("Estimates").
"""
from __future__ import annotations

from dataclasses import dataclass

from expc.archs import arch_of

GIB = 1024 ** 3

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


def device_hours(manifest: dict, mfu: float = 0.4) -> float:
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


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory per device in GiB. `offloaded` is held in host memory per process, not in `total`."""

    parameters: float
    gradients: float
    optimizer: float
    activations: float
    offloaded: float = 0.0

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.optimizer + self.activations

    def describe(self) -> str:
        """One line, e.g. 'parameters 2.4 + gradients 2.4 + optimizer 2.3 + activations 8.0 = 15.1 GiB'."""
        parts = " + ".join(f"{name} {value:.1f}" for name, value in (
            ("parameters", self.parameters), ("gradients", self.gradients),
            ("optimizer", self.optimizer), ("activations", self.activations)))
        tail = f" (plus {self.offloaded:.1f} GiB offloaded to host memory)" if self.offloaded else ""
        return f"{parts} = {self.total:.1f} GiB{tail}"


def memory_per_device(manifest: dict) -> MemoryEstimate:
    """Model states under ZeRO partitioning and offload, plus activations of one micro batch.

    Model states follow the ZeRO paper (Rajbhandari et al. 2019, section 3): with mixed precision
    (bf16/fp16) each parameter costs 2 bytes of weights, 2 of gradients and 12 of optimizer state
    (fp32 master copy, Adam's two moments); in fp32 it is 4 + 4 + 8 (the weights are the master
    copy). SGD keeps one moment instead of two. Stage 1 divides the optimizer state by the world
    size, stage 2 the gradients too, stage 3 the weights too. `offload_optimizer` moves the
    optimizer state to host memory; `offload_param` (stage 3) the weights. With an adapter the
    frozen base keeps only its weights: gradients and optimizer state are the adapter's.

    Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation"): 34 bytes
    x micro batch x block_size x n_embd per layer at 16 bits (the trainer's fused attention keeps
    no block_size^2 score matrix), twice that in fp32, plus the fp32 logits and their gradient.
    Temporary buffers (communication buckets, ZeRO-3 gathered layers) are left out, so this is
    a floor, not a ceiling.
    """
    ds, model = manifest["deepspeed"], manifest["model"]
    n, trainable = parameter_count(model), trainable_parameters(manifest)
    dims = arch_of(model).dims(model)
    world = world_size(manifest)
    mixed = precision(manifest)
    element = _ELEMENT_BYTES[mixed]
    zero = ds.get("zero_optimization") or {}
    stage = zero.get("stage", 0)

    moments = 1 if str((ds.get("optimizer") or {}).get("type", "")).lower() == "sgd" else 2
    optimizer_bytes = 4 * moments + (4 if mixed != "fp32" else 0)

    parameters = n * element / (world if stage >= 3 else 1)
    gradients = trainable * element / (world if stage >= 2 else 1)
    optimizer = trainable * optimizer_bytes / (world if stage >= 1 else 1)

    offloaded = 0.0
    if stage >= 1 and _offloaded(zero, "offload_optimizer"):
        offloaded, optimizer = offloaded + optimizer, 0.0
    if stage >= 3 and _offloaded(zero, "offload_param"):
        offloaded, parameters = offloaded + parameters, 0.0

    micro = ds.get("train_micro_batch_size_per_gpu", 1)
    tokens = micro * sequence_length(manifest)
    per_layer = 34 * tokens * dims.width * (element / 2)
    logits = 2 * 4 * tokens * dims.vocab
    activations = dims.layers * per_layer + logits

    return MemoryEstimate(parameters / GIB, gradients / GIB, optimizer / GIB, activations / GIB,
                          offloaded / GIB)


def _offloaded(zero: dict, key: str) -> bool:
    section = zero.get(key)
    return isinstance(section, dict) and section.get("device") in ("cpu", "nvme")
