"""Derived quantities of a manifest: parameter count, tokens, compute, memory per device.

Used by the build-time memory-fit check, by `expc diff` and by reports. Plain arithmetic on the
manifest; no torch.
"""
from __future__ import annotations


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
