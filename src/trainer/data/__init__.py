"""Data sources: the manifest's `data` section -> a Corpus, and batches as a pure function of
(seed, split, step, rank, micro-batch), so a resumed run needs no data state. One module per
source:

    corpus.py     load_corpus (picks the source by `data.source`), get_batch
    synthetic.py  "synthetic": a learnable random walk, for tests
    text.py       "stdlib" and "text": byte-level text files
    tokens.py     "tokens": nanoGPT-style .bin token shards
    types.py      Corpus, what every source returns

May import: numpy, torch, the shared ground of expc (expc.errors); never the loop or the models.
"""
from .corpus import TRAIN, VAL, get_batch, load_corpus
from .synthetic import synthetic
from .types import Corpus

__all__ = ["TRAIN", "VAL", "Corpus", "get_batch", "load_corpus", "synthetic"]
