"""Derived quantities of a manifest: parameter count, tokens, compute, memory per device.

Input: a manifest (or document) as a plain dict. Output: numbers, and one small dataclass for the
memory breakdown. Used by the build-time memory-fit check, by `expc diff` and by reports. Plain
arithmetic; no torch. Formulas and their sources are in docs/compiler.md ("Estimates").
"""
from __future__ import annotations

from dataclasses import dataclass

GIB = 1024 ** 3

# Bytes per element of the weights and gradients that live on the device, by training precision.
_ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def parameter_count(model: dict) -> int:
    """Parameters of the built-in GPT: embeddings (tied with the head) + blocks + final norm."""
    d, layers, vocab, ctx = model["n_embd"], model["n_layer"], model["vocab_size"], model["block_size"]
    bias = 1 if model.get("bias") else 0
    per_block = (
        2 * d * (1 + bias)               # two LayerNorms (weight, bias)
        + 3 * d * d + 3 * d * bias       # qkv projection
        + d * d + d * bias               # attention output projection
        + 4 * d * d + 4 * d * bias       # MLP up
        + 4 * d * d + d * bias           # MLP down
    )
    return vocab * d + ctx * d + layers * per_block + d * (1 + bias)


def world_size(manifest: dict) -> int:
    """Training processes in all: nodes x processes per node (all of them data-parallel)."""
    hardware = manifest["hardware"]
    return hardware["nodes"] * hardware["procs_per_node"]


def tokens_per_step(manifest: dict) -> int:
    """Tokens consumed by one optimizer step: global batch (sequences) x context length."""
    return manifest["deepspeed"]["train_batch_size"] * manifest["model"]["block_size"]


def total_tokens(manifest: dict) -> int:
    """Tokens consumed by the whole run: tokens per step x train.max_steps."""
    return tokens_per_step(manifest) * manifest["train"]["max_steps"]


def flops_per_token(manifest: dict) -> int:
    """Training FLOPs per token, forward and backward: 6N + 12 * n_layer * n_embd * block_size.

    6N counts the matrix multiplies (2 forward + 4 backward per parameter); N leaves out the
    position embeddings, a lookup with no multiply, but keeps the token embedding since it is
    tied with the output head. The second term is attention's QK^T and AV products, which have
    no parameters (PaLM paper, appendix B; nanoGPT's estimate_mfu uses the same form).
    """
    model = manifest["model"]
    n = parameter_count(model) - model["block_size"] * model["n_embd"]
    return 6 * n + 12 * model["n_layer"] * model["n_embd"] * model["block_size"]


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
    ds = manifest["deepspeed"]
    for name in ("bf16", "fp16"):
        section = ds.get(name)
        if isinstance(section, dict) and section.get("enabled") is True:
            return name
    return "fp32"


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
    optimizer state to host memory; `offload_param` (stage 3) the weights.

    Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation"): 34 bytes
    x micro batch x block_size x n_embd per layer at 16 bits (the trainer's fused attention keeps
    no block_size^2 score matrix), twice that in fp32, plus the fp32 logits and their gradient.
    Temporary buffers (communication buckets, ZeRO-3 gathered layers) are left out, so this is
    a floor, not a ceiling.
    """
    ds, model = manifest["deepspeed"], manifest["model"]
    n = parameter_count(model)
    world = world_size(manifest)
    mixed = precision(manifest)
    element = _ELEMENT_BYTES[mixed]
    zero = ds.get("zero_optimization") or {}
    stage = zero.get("stage", 0)

    moments = 1 if str((ds.get("optimizer") or {}).get("type", "")).lower() == "sgd" else 2
    optimizer_bytes = 4 * moments + (4 if mixed != "fp32" else 0)

    parameters = n * element / (world if stage >= 3 else 1)
    gradients = n * element / (world if stage >= 2 else 1)
    optimizer = n * optimizer_bytes / (world if stage >= 1 else 1)

    offloaded = 0.0
    if stage >= 1 and _offloaded(zero, "offload_optimizer"):
        offloaded, optimizer = offloaded + optimizer, 0.0
    if stage >= 3 and _offloaded(zero, "offload_param"):
        offloaded, parameters = offloaded + parameters, 0.0

    micro = ds.get("train_micro_batch_size_per_gpu", 1)
    tokens = micro * model["block_size"]
    per_layer = 34 * tokens * model["n_embd"] * (element / 2)
    logits = 2 * 4 * tokens * model["vocab_size"]
    activations = model["n_layer"] * per_layer + logits

    return MemoryEstimate(parameters / GIB, gradients / GIB, optimizer / GIB, activations / GIB,
                          offloaded / GIB)


def _offloaded(zero: dict, key: str) -> bool:
    section = zero.get(key)
    return isinstance(section, dict) and section.get("device") in ("cpu", "nvme")
