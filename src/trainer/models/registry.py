"""The arch registry: `model.arch` -> the function that builds its torch module.

Each arch names its builder in its compile-side description (expc.archs, `Arch.build`, a
"module:function" string), so the built-in archs and plug-in packages are found the same way and
`expc build` never imports torch. A builder takes the whole manifest (an arch may read
`deepspeed` or `adapter`) and the folder relative paths start from, and returns a module whose
forward(*batch) returns (logits, loss) for the batches of the run's data source.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch.nn as nn

from expc.archs import arch_of
from expc.errors import ExpcError


def build_model(manifest: dict, root: Path | None = None) -> nn.Module:
    """The manifest's model, freshly initialised or loaded (seed the RNG first)."""
    arch = arch_of(manifest["model"])  # an unknown arch: a located error with did-you-mean
    module_name, _, function = arch.build.partition(":")
    try:
        build = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as err:
        raise ExpcError(f'arch "{arch.name}" names its builder {arch.build!r}, which does not import: {err}',
                        "$.model.arch") from None
    return build(manifest, Path(root or Path.cwd()))
