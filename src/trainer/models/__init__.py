"""Models: a manifest -> a torch module whose forward(*batch) returns (logits, loss). One module
per model family; `build_model` finds each through its arch (expc.archs), so the training loop
never changes when a family is added:

    registry.py  build_model: model.arch -> the arch's builder ("module:function")
    gpt.py       the built-in "gpt" (nanoGPT's names), trained from scratch
    hf.py        "hf_causal_lm": a pinned Hugging Face base, LoRA through peft, the export

May import: torch, transformers, peft, and the shared ground of expc (errors, archs, pins,
examples); never the loop (train.py) or the data sources.
"""
from .gpt import GPT
from .registry import build_model

__all__ = ["GPT", "build_model"]
