"""What an arch declares (Arch), and the sizes the estimates read from it (Dims)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from expc.errors import Problem


@dataclass(frozen=True)
class Dims:
    """What the activation and FLOP estimates need of a transformer."""

    layers: int
    width: int  # the residual stream
    vocab: int
    context: int | None  # tokens per sequence the model itself fixes (GPT's block_size), else None


@dataclass(frozen=True)
class Arch:
    name: str
    summary: str  # one line, for `expc ls models` and the manifest reference
    properties: dict  # JSON Schema of each field of the model section except `arch`
    required: list[str]
    parameters: Callable[[dict], int]  # model section -> parameter count
    dims: Callable[[dict], Dims]
    build: str  # "module:function" that builds the torch module (trainer side only)
    adapters: bool = False  # whether the run may carry an `adapter` section (LoRA)
    problems: Callable[[dict], list[Problem]] = lambda model: []  # rules across the model's fields
    # Linear layers by leaf name -> (in_features, out_features, how many), for LoRA's parameter
    # count and for checking `adapter.target_modules` at build; None when unknown without torch.
    linear_layers: Callable[[dict], dict[str, tuple[int, int, int]] | None] = lambda model: None
    # Leaf names of the other modules (embeddings, norms): targets LoRA cannot take.
    other_modules: tuple[str, ...] = ()
    # Every parameter tensor as (elements, how many), for ZeRO-3's persistence threshold and its
    # largest gathered tensor; None when unknown (the estimate then partitions every parameter).
    tensors: Callable[[dict], list[tuple[int, int]]] | None = None
    # Bytes per token per layer that the backward pass keeps at 16 bits (doubled in fp32);
    # None: Korthikanti et al.'s 34 x width for a GPT block with fused attention and dropout.
    activation_bytes: Callable[[dict], float] | None = None
    # The model field that turns activation checkpointing on (recompute each layer in the
    # backward pass), when the arch has one.
    checkpointing_field: str | None = None
    extras: dict = field(default_factory=dict)

    def schema(self) -> dict:
        """The closed schema of a model section of this arch."""
        return {"type": "object", "additionalProperties": False, "required": ["arch", *self.required],
                "properties": {"arch": {"const": self.name, "description": self.summary}, **self.properties}}

    def flops_per_token(self, model: dict, sequence: int) -> float:
        """Training FLOPs per token: 6N for the matmuls of forward and backward (N without the
        parameters that are only looked up: position embeddings, and the token embedding when
        it is not tied to the head) plus attention's 12 * layers * width * sequence (PaLM's
        appendix B). An arch that is not a transformer gives its own as
        extras["flops_per_token"](model, sequence)."""
        own = self.extras.get("flops_per_token")
        if own:
            return own(model, sequence)
        dims = self.dims(model)
        return 6 * (self.parameters(model) - self.lookup_parameters(model)) + 12 * dims.layers * dims.width * sequence

    def activations_per_token_layer(self, model: dict) -> float:
        """Bytes per token per layer kept for the backward pass at 16 bits."""
        if self.activation_bytes:
            return self.activation_bytes(model)
        return 34 * self.dims(model).width

    def checkpointing(self, model: dict) -> bool:
        """Whether the model section turns activation checkpointing on."""
        return bool(self.checkpointing_field and model.get(self.checkpointing_field) is True)

    def lookup_parameters(self, model: dict) -> int:
        fn = self.extras.get("lookup_parameters")
        return fn(model) if fn else 0
