"""The "gpt" arch: the trainer's own decoder-only transformer (trainer/models/gpt.py), with
nanoGPT's names. Trained from scratch; it takes no adapter."""
from __future__ import annotations

from expc.errors import Problem, json_path

from .arch import Arch, Dims


def _int(description: str, maximum: int, minimum: int = 1) -> dict:
    return {"description": description, "type": "integer", "minimum": minimum, "maximum": maximum}


PROPERTIES = {
    "n_layer": _int("Number of transformer blocks.", 1024),
    "n_head": _int("Attention heads per block; must divide n_embd.", 1024),
    "n_embd": _int("Width of the residual stream.", 65536),
    "block_size": _int("Context length in tokens.", 1048576),
    "vocab_size": _int("Token vocabulary size (256 for byte-level corpora).", 1048576, minimum=2),
    "dropout": {"description": "Dropout probability on attention and residual paths.", "type": "number",
                "minimum": 0, "maximum": 1},
    "bias": {"description": "Whether Linear and LayerNorm layers carry a bias.", "type": "boolean"},
}


def parameters(model: dict) -> int:
    """Embeddings (the token one tied with the head) + blocks + final norm."""
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


def tensors(model: dict) -> list[tuple[int, int]]:
    """The parameter tensors of trainer/models/gpt.py, as (elements, how many); they add up to
    `parameters`."""
    d, layers, vocab, ctx = model["n_embd"], model["n_layer"], model["vocab_size"], model["block_size"]
    found = [(vocab * d, 1), (ctx * d, 1), (d, 1 + 2 * layers),  # embeddings; every LayerNorm weight
             (3 * d * d, layers), (d * d, layers), (4 * d * d, 2 * layers)]
    if model.get("bias"):
        found += [(d, 1 + 2 * layers), (3 * d, layers), (d, layers), (4 * d, layers), (d, layers)]
    return found


def problems(model: dict) -> list[Problem]:
    if model["n_embd"] % model["n_head"]:
        return [Problem(f"n_embd {model['n_embd']} is not divisible by n_head {model['n_head']}",
                        json_path(["model", "n_embd"]))]
    return []


ARCH = Arch(
    name="gpt",
    summary="The trainer's own GPT (nanoGPT's names), trained from scratch.",
    properties=PROPERTIES,
    required=list(PROPERTIES),
    parameters=parameters,
    dims=lambda m: Dims(m["n_layer"], m["n_embd"], m["vocab_size"], m["block_size"]),
    build="trainer.models.gpt:build_gpt",
    problems=problems,
    tensors=tensors,
    activation_bytes=lambda m: (34 if m["dropout"] > 0 else 32) * m["n_embd"],
    # The token embedding is tied with the head, so it is a matmul; the position one is a lookup.
    extras={"lookup_parameters": lambda m: m["block_size"] * m["n_embd"]},
)
