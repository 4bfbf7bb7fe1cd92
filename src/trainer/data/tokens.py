"""The "tokens" source: nanoGPT-style .bin shards of uint16/uint32 token ids (a file, a folder of
shards, or a folder with train.bin and val.bin); the tail of each shard is held out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from expc.errors import ExpcError
from expc.pins import token_files

from .types import Corpus


def token_shards(path: Path, dtype: str, val_fraction: float) -> Corpus:
    """A folder with nanoGPT's train.bin and val.bin uses them as they are; otherwise the tail of
    every shard is held out."""
    if (path / "train.bin").is_file() and (path / "val.bin").is_file():
        train, val = (np.memmap(path / f"{name}.bin", dtype=np.dtype(dtype), mode="r") for name in ("train", "val"))
        return Corpus([train], [val], f"tokens: train.bin and val.bin of {dtype}, {len(train)} + {len(val)} tokens", False)
    shards = token_files(path)  # the same selection the build pinned (expc.pins)
    if not shards:
        raise ExpcError(f"no .bin token shards at {path}", "$.data.path")
    arrays = [np.memmap(s, dtype=np.dtype(dtype), mode="r") for s in shards]
    cuts = [int(len(a) * (1 - val_fraction)) for a in arrays]
    total = sum(len(a) for a in arrays)
    return Corpus([a[:c] for a, c in zip(arrays, cuts)], [a[c:] for a, c in zip(arrays, cuts)],
                  f"tokens: {len(arrays)} shards of {dtype}, {total} tokens", False)
