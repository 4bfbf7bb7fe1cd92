"""Models: a manifest's `model` section -> a torch module whose forward(idx, targets) returns
(logits, loss). One module per model family, each registering its builder by arch name; the
training loop never changes:

    @register("mamba")
    def build_mamba(config: dict) -> torch.nn.Module: ...

    registry.py  ARCHS, register, build_model
    gpt.py       the built-in "gpt" (nanoGPT's names), and its FLOPs per token

May import: torch, the shared ground of expc (expc.errors); never the loop (train.py) or the
data sources.
"""
from . import gpt  # noqa: F401  (registers "gpt")
from .gpt import GPT, flops_per_token
from .registry import ARCHS, build_model, register

__all__ = ["ARCHS", "GPT", "build_model", "flops_per_token", "register"]
