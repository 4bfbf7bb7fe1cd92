"""What every data source returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Corpus:
    train: list[np.ndarray]  # one or more shards of token ids
    val: list[np.ndarray]
    description: str  # for metadata.json: what was read, and a fingerprint of it
    is_text: bool  # bytes of text, so a sample can be decoded
