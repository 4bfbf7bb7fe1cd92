"""The arch registry: `model.arch` -> the function that builds a torch module from the manifest's
`model` section.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from expc.errors import ExpcError, did_you_mean

ARCHS: dict[str, Callable[[dict], nn.Module]] = {}


def register(arch: str):
    """Decorator: make `build(config)` the implementation of `model.arch == arch`."""
    def add(build):
        ARCHS[arch] = build
        return build
    return add


def build_model(config: dict) -> nn.Module:
    """The manifest's model section -> a freshly initialised module (seed the RNG first)."""
    build = ARCHS.get(config["arch"])
    if build is None:
        raise ExpcError(f'unknown model arch "{config["arch"]}"{did_you_mean(config["arch"], ARCHS)}; '
                        f"the trainer has: {', '.join(sorted(ARCHS))}", "$.model.arch")
    return build(config)
