"""The "stdlib" and "text" sources, byte-level: the Python standard library's own .py files (no
download), or plain text files (a file or a folder). Files are read in sorted order (at most
`max_files`), then shuffled with the seed; the last `val_fraction` of the bytes is held out.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from expc.errors import ExpcError
from expc.pins import text_files as files_to_read

from .types import Corpus


def text_files(root: Path, source: str, max_files: int | None, seed: int, val_fraction: float) -> Corpus:
    if not root.exists():
        raise ExpcError(f"no such file or folder: {root}", "$.data.path")
    # the same selection the build pinned (expc.pins), so the digest covers exactly these bytes
    files = files_to_read(root, "*.py" if source == "stdlib" else "*", max_files)
    if not files:
        raise ExpcError(f"no files to read under {root}", "$.data.path")
    order = np.random.default_rng([seed, 11]).permutation(len(files))
    blob = b"".join(files[i].read_bytes() for i in order)
    tokens = np.frombuffer(blob, dtype=np.uint8)
    cut = int(len(tokens) * (1 - val_fraction))
    what = f"{source}: {len(files)} files, {len(tokens)} bytes, sha256 {hashlib.sha256(blob).hexdigest()[:12]}"
    return Corpus([tokens[:cut]], [tokens[cut:]], what, True)
