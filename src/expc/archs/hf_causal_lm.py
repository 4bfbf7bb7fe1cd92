"""The "hf_causal_lm" arch: a pretrained Hugging Face causal LM (`transformers`), loaded from a
local folder or a hub id at a pinned commit, fine-tuned fully or through an adapter.

The manifest pins the base by content: a local folder by the sha256 of every file in it
(`files`), a hub id by its 40-hex commit `revision`. The shape the estimates need is frozen from
its config.json into `config`, so `expc diff`, `ls` and the estimates read the manifest alone.
The compile stage `pin` fills both in (compile/pin.py).
"""
from __future__ import annotations

import re

from expc.errors import Problem, json_path

from .arch import Arch, Dims

SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}

CONFIG_PROPERTIES = {
    "model_type": {"description": "config.json's model_type, e.g. \"llama\" or \"qwen2\".", "type": "string",
                   "pattern": "^[a-z0-9_]+$", "maxLength": 64},
    "hidden_size": {"description": "Width of the residual stream.", "type": "integer", "minimum": 1, "maximum": 1048576},
    "num_hidden_layers": {"description": "Number of decoder layers.", "type": "integer", "minimum": 1, "maximum": 4096},
    "num_attention_heads": {"description": "Query heads per layer.", "type": "integer", "minimum": 1, "maximum": 4096},
    "num_key_value_heads": {"description": "Key/value heads per layer (fewer than query heads: grouped-query "
                                           "attention).", "type": "integer", "minimum": 1, "maximum": 4096},
    "head_dim": {"description": "Width of one attention head.", "type": "integer", "minimum": 1, "maximum": 65536},
    "intermediate_size": {"description": "Width of the gated MLP.", "type": "integer", "minimum": 1, "maximum": 4194304},
    "vocab_size": {"description": "Rows of the token embedding.", "type": "integer", "minimum": 2, "maximum": 16777216},
    "max_position_embeddings": {"description": "Longest sequence the positions support.", "type": "integer",
                                "minimum": 1, "maximum": 268435456},
    "tie_word_embeddings": {"description": "Whether the output head is the token embedding.", "type": "boolean"},
    "attention_bias": {"description": "Whether the q/k/v projections carry a bias (Qwen2 does).",
                       "type": "boolean"},
}

PROPERTIES = {
    "source": {"description": "The base model: a local folder (relative to the project root, or absolute) "
                              "when `revision` is null, else a Hugging Face hub id such as \"Qwen/Qwen2.5-1.5B\".",
               "type": "string", "minLength": 1, "maxLength": 4096},
    "revision": {"description": "For a hub id: the 40-hex commit to load (a branch or tag could move). Null for "
                                "a local folder.",
                 "anyOf": [{"type": "null"}, {"type": "string", "pattern": "^[0-9a-f]{40}$"}]},
    "files": {"description": "For a local folder: the sha256 of every file in it, by path inside the folder. "
                             "Filled in by `expc build`; every rank checks them before loading.",
              "type": "object", "propertyNames": {"maxLength": 1024}, "additionalProperties": SHA256},
    "config": {"description": "The shape of the base, frozen from its config.json at build time (for the "
                              "estimates and for review).",
               "type": "object", "additionalProperties": False,
               "required": ["model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                            "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size",
                            "max_position_embeddings", "tie_word_embeddings", "attention_bias"],
               "properties": CONFIG_PROPERTIES},
    "dtype": {"description": "Precision the weights are loaded in (the deepspeed section's bf16/fp16 decides the "
                             "training precision).", "enum": ["float32", "bfloat16", "float16"]},
    "attn_implementation": {"description": "transformers' attention kernel: \"sdpa\" (torch's fused attention) "
                                           "or \"eager\".", "enum": ["sdpa", "eager"]},
    "gradient_checkpointing": {"description": "Recompute each layer's activations in the backward pass "
                                              "(less memory, about a third more compute).", "type": "boolean"},
    "trust_remote_code": {"description": "Allow the base to run its own modelling code from its folder. Off "
                                         "unless the spec turns it on (and then it is in the hash).",
                          "type": "boolean"},
}

# Families whose module names are known without loading them: the Llama layout.
LLAMA_LAYOUT = ("llama", "mistral", "qwen2", "qwen3")
OTHER_MODULES = ("embed_tokens", "norm", "input_layernorm", "post_attention_layernorm", "rotary_emb")


def _shape(c: dict) -> tuple[int, int, int, int, int, int, int]:
    return (c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"],
            c["head_dim"], c["intermediate_size"], c["vocab_size"])


def linear_layers(model: dict) -> dict[str, tuple[int, int, int]] | None:
    c = model["config"]
    if c["model_type"] not in LLAMA_LAYOUT:
        return None
    h, layers, heads, kv, hd, inner, vocab = _shape(c)
    return {"q_proj": (h, heads * hd, layers), "k_proj": (h, kv * hd, layers), "v_proj": (h, kv * hd, layers),
            "o_proj": (heads * hd, h, layers), "gate_proj": (h, inner, layers), "up_proj": (h, inner, layers),
            "down_proj": (inner, h, layers), "lm_head": (h, vocab, 1)}


def parameters(model: dict) -> int:
    """Llama-layout count: embedding, per layer (q, k, v, o; gated MLP; two RMSNorms), final norm,
    and the head unless tied. Other families are counted the same way, an estimate."""
    c = model["config"]
    h, layers, heads, kv, hd, inner, vocab = _shape(c)
    attention = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    if c["attention_bias"]:
        attention += heads * hd + 2 * kv * hd
    per_layer = attention + 3 * h * inner + 2 * h + (2 * hd if c["model_type"] == "qwen3" else 0)
    head = 0 if c["tie_word_embeddings"] else vocab * h
    return vocab * h + layers * per_layer + h + head


def tensors(model: dict) -> list[tuple[int, int]] | None:
    """The Llama layout's parameter tensors as (elements, how many); None for other families."""
    layers = linear_layers(model)
    if layers is None:
        return None
    c = model["config"]
    h, n_layers, heads, kv, hd, _, vocab = _shape(c)
    found = [(fan_in * fan_out, times) for name, (fan_in, fan_out, times) in layers.items() if name != "lm_head"]
    found += [(vocab * h, 1 if c["tie_word_embeddings"] else 2), (h, 2 * n_layers + 1)]
    if c["attention_bias"]:
        found += [(heads * hd, n_layers), (kv * hd, 2 * n_layers)]
    if c["model_type"] == "qwen3":
        found += [(hd, 2 * n_layers)]
    return found


def activation_bytes(model: dict) -> float:
    """Bytes per token per decoder layer kept for the backward pass at 16 bits, counted op by op
    for the Llama layout with fused attention (sdpa): the two RMSNorms keep their input in fp32
    (4h each); q/k/v share one saved input (2h); the rotary embedding keeps q and k and their
    rotated halves (4q + 4kv, where q = heads x head_dim and kv = kv_heads x head_dim); attention
    keeps the rotated q, k, v and its output (4q + 4kv); the MLP keeps its input (2h), the gate's
    output for SiLU (2i), SiLU's output and up's for the product (4i), and the product for down
    (2i). The residual adds keep nothing. That is 12h + 8q + 8kv + 8i."""
    h, _, heads, kv, hd, inner, _ = _shape(model["config"])
    return 12 * h + 8 * heads * hd + 8 * kv * hd + 8 * inner


def problems(model: dict) -> list[Problem]:
    found = []
    revision, files = model["revision"], model["files"]
    if revision is None and not files:
        found.append(Problem("a local base model is pinned by its files' sha256, and `files` is empty",
                             json_path(["model", "files"])))
    if revision is not None and files:
        found.append(Problem("a hub model is pinned by its revision; `files` is for local folders",
                             json_path(["model", "files"])))
    if revision is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", model["source"]):
        found.append(Problem(f"{model['source']!r} is not a hub id (owner/name)", json_path(["model", "source"])))
    c = model["config"]
    if c["num_attention_heads"] % c["num_key_value_heads"]:
        found.append(Problem(f"num_attention_heads {c['num_attention_heads']} is not a multiple of "
                             f"num_key_value_heads {c['num_key_value_heads']}",
                             json_path(["model", "config", "num_key_value_heads"])))
    return found


ARCH = Arch(
    name="hf_causal_lm",
    summary="A pretrained Hugging Face causal LM (transformers), pinned by content, fine-tuned fully or "
            "with an adapter.",
    properties=PROPERTIES,
    required=list(PROPERTIES),
    parameters=parameters,
    dims=lambda m: Dims(m["config"]["num_hidden_layers"], m["config"]["hidden_size"], m["config"]["vocab_size"],
                        None),
    build="trainer.models.hf:build_hf_causal_lm",
    adapters=True,
    problems=problems,
    linear_layers=linear_layers,
    other_modules=OTHER_MODULES,
    tensors=tensors,
    activation_bytes=activation_bytes,
    checkpointing_field="gradient_checkpointing",
    # An untied token embedding is only looked up; a tied one is also the head's matmul.
    extras={"lookup_parameters": lambda m: 0 if m["config"]["tie_word_embeddings"]
            else m["config"]["vocab_size"] * m["config"]["hidden_size"]},
)
