"""Data sources: the manifest's `data` section -> a source whose batches are a pure function of
(seed, split, step, rank, micro-batch), so a resumed run needs no data state. Every source has
`batch(split, step, rank, micro, batch_size, device)` -> the tuple the model's forward takes,
`tokens(batch)`, `description`, `is_text` and `counts` (for metadata.json). One module per source:

    corpus.py        load_corpus + get_batch: token windows for the GPT (TokenWindows)
    synthetic.py     "synthetic": a learnable random walk, for tests
    text.py          "stdlib" and "text": byte-level text files
    tokens.py        "tokens": nanoGPT-style .bin token shards
    instructions.py  "jsonl": instruction examples for a Hugging Face base (input_ids, labels, mask)
    types.py         Corpus, what the token sources return

May import: numpy, torch, the shared ground of expc (errors, examples, pins); never the loop or
the models.
"""
from pathlib import Path

from .corpus import TRAIN, VAL, TokenWindows, get_batch, load_corpus
from .synthetic import synthetic
from .types import Corpus

__all__ = ["TRAIN", "VAL", "Corpus", "TokenWindows", "get_batch", "load", "load_corpus", "synthetic"]


def load(manifest: dict, root: Path, world: int, accumulation: int):
    """The run's data source, ready to batch."""
    data = manifest["data"]
    if data["source"] == "jsonl":
        from .instructions import Instructions

        return Instructions(manifest, root, world, accumulation)
    from expc.archs import arch_of

    dims = arch_of(manifest["model"]).dims(manifest["model"])  # a token model: vocabulary and context
    corpus = load_corpus(data, manifest["seed"], dims.vocab, dims.context)
    return TokenWindows(corpus, manifest["seed"], dims.context)
