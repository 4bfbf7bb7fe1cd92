"""The "synthetic" source: a learnable random walk over the vocabulary (each token mostly
follows from the previous one through a fixed permutation), for tests.
"""
from __future__ import annotations

import numpy as np

from .types import Corpus


def synthetic(seed: int, vocab_size: int, val_fraction: float, length: int = 1 << 16) -> Corpus:
    rng = np.random.default_rng([seed, 7])
    follow = rng.permutation(vocab_size)
    jumps = rng.random(length) < 0.1  # one token in ten is unpredictable
    random_tokens = rng.integers(0, vocab_size, length)
    tokens = np.empty(length, dtype=np.int64)
    tokens[0] = 0
    for i in range(1, length):
        tokens[i] = random_tokens[i] if jumps[i] else follow[tokens[i - 1]]
    cut = int(length * (1 - val_fraction))
    return Corpus([tokens[:cut]], [tokens[cut:]], f"synthetic random walk, {length} tokens", False)
