"""Data: the manifest's `data` section -> a Corpus of train and validation token arrays, and
batches that are a pure function of (seed, step, rank, micro-batch).

Because a batch depends only on those numbers, a resumed run needs no data state: the step in
the checkpoint says where it is. `load_corpus` picks the source module by `data.source`.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import torch

from expc.errors import ExpcError

from .synthetic import synthetic
from .text import text_files
from .tokens import token_shards
from .types import Corpus

TRAIN, VAL = 0, 1  # mixed into batch seeds so train and validation batches never coincide


def load_corpus(data: dict, seed: int, vocab_size: int, block_size: int) -> Corpus:
    source = data["source"]
    if source == "synthetic":
        corpus = synthetic(seed, vocab_size, data["val_fraction"])
    elif source in ("stdlib", "text"):
        root = Path(sysconfig.get_paths()["stdlib"]) if source == "stdlib" else Path(data["path"])
        corpus = text_files(root, source, data.get("max_files"), seed, data["val_fraction"])
    else:
        corpus = token_shards(Path(data["path"]), data["dtype"], data["val_fraction"])
    if corpus.is_text and vocab_size < 256:
        raise ExpcError(f"byte-level data needs vocab_size >= 256, the model has {vocab_size}", "$.model.vocab_size")
    for split, shards in (("train", corpus.train), ("validation", corpus.val)):
        if max(len(s) for s in shards) <= block_size + 1:
            raise ExpcError(f"the {split} split ({max(len(s) for s in shards)} tokens in its largest "
                            f"shard) is shorter than one block of {block_size + 1} tokens", "$.data")
    return corpus


def get_batch(shards: list[np.ndarray], split: int, seed: int, step: int, rank: int, micro: int,
              batch_size: int, block_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y), each (batch_size, block_size): random windows, y shifted by one. A pure function of
    its arguments: the generator is seeded from (seed, split, step, rank, micro) alone."""
    rng = np.random.default_rng([seed, split, step, rank, micro])
    usable = np.array([max(len(s) - block_size - 1, 0) for s in shards], dtype=np.float64)
    which = rng.choice(len(shards), size=batch_size, p=usable / usable.sum())
    rows_x, rows_y = [], []
    for shard in which:
        start = int(rng.integers(0, usable[shard]))
        window = np.asarray(shards[shard][start:start + block_size + 1], dtype=np.int64)
        rows_x.append(window[:-1])
        rows_y.append(window[1:])
    x = torch.from_numpy(np.stack(rows_x))
    y = torch.from_numpy(np.stack(rows_y))
    if torch.device(device).type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


class TokenWindows:
    """A Corpus as the loop reads it: batches of (x, y) windows of block_size tokens."""

    def __init__(self, corpus: Corpus, seed: int, block_size: int):
        self.corpus, self.seed, self.block_size = corpus, seed, block_size
        self.description, self.is_text = corpus.description, corpus.is_text
        self.counts: dict = {}

    def batch(self, split: int, step: int, rank: int, micro: int, batch_size: int, device) -> tuple:
        shards = self.corpus.train if split == TRAIN else self.corpus.val
        return get_batch(shards, split, self.seed, step, rank, micro, batch_size, self.block_size, device)

    @staticmethod
    def tokens(batch: tuple) -> int:
        return batch[0].numel()
