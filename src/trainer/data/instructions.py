"""The "jsonl" source: instruction examples (expc.examples tokenizes them, exactly as `expc show
--samples` prints them), batched as (input_ids, labels, attention_mask), padded to the longest
example of the micro-batch; with `packing`, training examples are first joined into sequences of
up to max_length tokens (expc.examples.pack), so a batch carries little padding.

Training batches walk the examples epoch by epoch: sample number g of the run (counted over
steps, micro-batches, ranks and batch rows) is example perm_e[g mod N] of epoch e = g div N, where
perm_e is a permutation seeded by (seed, e). Every example is seen once per epoch, and a batch is
still a pure function of (seed, step, rank, micro): a resumed run needs no data state.
Validation batches are the first examples of the validation split, the same at every evaluation.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from expc.examples import IGNORE, Example, Tokenizer, base_folder, examples, pack

from .corpus import TRAIN


class Instructions:
    is_text = False  # no sample text at the end: the model answers prompts, it does not ramble

    def __init__(self, manifest: dict, root: Path, world: int, accumulation: int):
        data, model = manifest["data"], manifest["model"]
        tokenizer = Tokenizer.load(base_folder(model, root))
        rows = examples(data, model, root, "train", tokenizer)
        self.train = pack(rows, data["max_length"]) if data["packing"] else rows  # sequences to train on
        self.val = examples(data, model, root, "val", tokenizer)
        self.pad_id = tokenizer.pad_id
        self.seed, self.world, self.accumulation = manifest["seed"], world, accumulation
        tokens = sum(len(e.ids) for e in rows)
        packed = f" packed into {len(self.train)} sequences" if data["packing"] else ""
        self.description = (f"jsonl: {len(rows)} train{packed} + {len(self.val)} val examples, {tokens} train tokens, "
                            f"template {data['template']['name']}")
        self.counts = {"train_examples": len(rows), "val_examples": len(self.val), "train_tokens": tokens,
                       "train_tokens_with_loss": sum(e.trained_tokens for e in rows),
                       **({"train_sequences": len(self.train)} if data["packing"] else {})}

    def batch(self, split: int, step: int, rank: int, micro: int, batch_size: int, device) -> tuple:
        if split == TRAIN:
            first = ((step * self.accumulation + micro) * self.world + rank) * batch_size
            chosen = [self._train_example(first + j) for j in range(batch_size)]
        else:
            first = (micro * self.world + rank) * batch_size  # the ranks share out the first examples
            chosen = [self.val[(first + j) % len(self.val)] for j in range(batch_size)]
        return pad(chosen, self.pad_id, device)

    def _train_example(self, g: int) -> Example:
        epoch, index = divmod(g, len(self.train))
        return self.train[int(self._order(epoch)[index])]

    @functools.lru_cache(maxsize=4)  # a batch spans at most two epochs; made once, not per example
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 23, epoch]).permutation(len(self.train))

    @staticmethod
    def tokens(batch: tuple) -> int:
        return int(batch[2].sum().item())


def pad(chosen: list[Example], pad_id: int, device) -> tuple:
    width = max(len(e.ids) for e in chosen)
    ids = np.full((len(chosen), width), pad_id, dtype=np.int64)
    labels = np.full((len(chosen), width), IGNORE, dtype=np.int64)
    mask = np.zeros((len(chosen), width), dtype=np.int64)
    for row, e in enumerate(chosen):
        ids[row, :len(e.ids)] = e.ids
        labels[row, :len(e.labels)] = e.labels
        mask[row, :len(e.ids)] = 1
    return tuple(torch.from_numpy(a).to(device) for a in (ids, labels, mask))
