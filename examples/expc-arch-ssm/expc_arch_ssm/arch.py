"""The "ssm" arch as the compiler sees it: the fields of its `model` section, its exact parameter
count, the sizes the estimates read, and the name of its torch builder.

This module is imported by every `expc build`, `show`, `diff` and `schema` once the plug-in is
installed, so it must stay light: the standard library and expc only, never torch (the builder
named in `build` is imported by the trainer alone).
"""
from __future__ import annotations

from expc.archs import Arch, Dims
from expc.errors import Problem, json_path


def _int(description: str, maximum: int, minimum: int = 1) -> dict:
    return {"description": description, "type": "integer", "minimum": minimum, "maximum": maximum}


PROPERTIES = {
    "n_layer": _int("Number of state-space blocks.", 1024),
    "d_model": _int("Width of the residual stream.", 65536),
    "d_state": _int("State size of the diagonal state-space scan, per inner channel.", 1024),
    "d_conv": _int("Kernel width of the causal depthwise convolution; at most block_size.", 64),
    "expand": _int("Inner width of a block as a multiple of d_model.", 16),
    "block_size": _int("Context length in tokens (the training window).", 1048576),
    "vocab_size": _int("Token vocabulary size (256 for byte-level corpora).", 1048576, minimum=2),
}


def dt_rank(model: dict) -> int:
    """Rank of the low-rank step-size projection: ceil(d_model / 16), Mamba's default."""
    return -(-model["d_model"] // 16)


def parameters(model: dict) -> int:
    """Exactly what model.py builds: the token embedding (tied with the head), the blocks, the
    final norm. Every Linear is bias-free except the step-size projection."""
    d, n, k = model["d_model"], model["d_state"], model["d_conv"]
    inner, rank = model["expand"] * model["d_model"], dt_rank(model)
    per_block = (
        d                            # RMSNorm weight
        + d * 2 * inner              # in_proj: x and the gate z
        + inner * k + inner          # depthwise causal conv (weight, bias)
        + inner * (rank + 2 * n)     # x_proj: step-size rank, B and C
        + rank * inner + inner       # dt_proj (weight, bias)
        + inner * n                  # A_log
        + inner                      # D, the skip
        + inner * d                  # out_proj
    )
    return model["vocab_size"] * d + model["n_layer"] * per_block + d


def problems(model: dict) -> list[Problem]:
    """Rules across fields, each located at the field to change."""
    if model["d_conv"] > model["block_size"]:
        return [Problem(f"d_conv {model['d_conv']} is longer than block_size {model['block_size']}",
                        json_path(["model", "d_conv"]))]
    return []


ARCH = Arch(
    name="ssm",
    summary="A tiny mamba-like state-space LM (an example plug-in: expc-arch-ssm).",
    properties=PROPERTIES,
    required=list(PROPERTIES),
    parameters=parameters,
    dims=lambda m: Dims(layers=m["n_layer"], width=m["d_model"], vocab=m["vocab_size"], context=m["block_size"]),
    build="expc_arch_ssm.model:build",
    problems=problems,
    # No parameter is a lookup only: the token embedding is tied with the head (a matmul), and
    # there is no position embedding (the convolution and the scan see order). An untied
    # embedding would be declared here: {"lookup_parameters": lambda m: m["vocab_size"] * m["d_model"]}.
    extras={"lookup_parameters": lambda m: 0},
)
