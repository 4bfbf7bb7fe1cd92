"""Data: the manifest's `data` section -> a Corpus of train and validation token arrays, and
batches that are a pure function of (seed, step, rank, micro-batch).

Because a batch depends only on those numbers, a resumed run needs no data state: the step in
the checkpoint says where it is. Sources:

  stdlib     the Python standard library's own .py files, byte-level (no download)
  synthetic  a learnable random walk over the vocabulary (each token mostly follows from the
             previous one through a fixed permutation), for tests
  tokens     nanoGPT-style .bin shards of uint16/uint32 token ids (a file, a folder of shards,
             or a folder with train.bin and val.bin)
  text       plain text files, byte-level (a file or a folder)

Files are read in sorted order (at most `max_files`), then shuffled with the seed; the last
`val_fraction` of the bytes (of each shard, for tokens) is held out for evaluation.
"""
from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from expc.errors import ExpcError

TRAIN, VAL = 0, 1  # mixed into batch seeds so train and validation batches never coincide


@dataclass
class Corpus:
    train: list[np.ndarray]  # one or more shards of token ids
    val: list[np.ndarray]
    description: str  # for metadata.json: what was read, and a fingerprint of it
    is_text: bool  # bytes of text, so a sample can be decoded


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


def text_files(root: Path, source: str, max_files: int | None, seed: int, val_fraction: float) -> Corpus:
    if root.is_file():
        files = [root]
    elif root.is_dir():
        pattern = "*.py" if source == "stdlib" else "*"
        files = sorted(p for p in root.rglob(pattern) if p.is_file() and not _skipped(p, root))
    else:
        raise ExpcError(f"no such file or folder: {root}", "$.data.path")
    files = files[:max_files] if max_files else files
    if not files:
        raise ExpcError(f"no files to read under {root}", "$.data.path")
    order = np.random.default_rng([seed, 11]).permutation(len(files))
    blob = b"".join(files[i].read_bytes() for i in order)
    tokens = np.frombuffer(blob, dtype=np.uint8)
    cut = int(len(tokens) * (1 - val_fraction))
    what = f"{source}: {len(files)} files, {len(tokens)} bytes, sha256 {hashlib.sha256(blob).hexdigest()[:12]}"
    return Corpus([tokens[:cut]], [tokens[cut:]], what, True)


def _skipped(path: Path, root: Path) -> bool:
    """Installed packages are not the standard library; hidden files are not corpus text."""
    parts = path.relative_to(root).parts
    return any(p in ("site-packages", "dist-packages", "__pycache__") or p.startswith(".") for p in parts)


def token_shards(path: Path, dtype: str, val_fraction: float) -> Corpus:
    """A folder with nanoGPT's train.bin and val.bin uses them as they are; otherwise the tail of
    every shard is held out."""
    if (path / "train.bin").is_file() and (path / "val.bin").is_file():
        train, val = (np.memmap(path / f"{name}.bin", dtype=np.dtype(dtype), mode="r") for name in ("train", "val"))
        return Corpus([train], [val], f"tokens: train.bin and val.bin of {dtype}, {len(train)} + {len(val)} tokens", False)
    shards = sorted(path.glob("*.bin")) if path.is_dir() else [path]
    if not shards or not shards[0].is_file():
        raise ExpcError(f"no .bin token shards at {path}", "$.data.path")
    arrays = [np.memmap(s, dtype=np.dtype(dtype), mode="r") for s in shards]
    cuts = [int(len(a) * (1 - val_fraction)) for a in arrays]
    total = sum(len(a) for a in arrays)
    return Corpus([a[:c] for a, c in zip(arrays, cuts)], [a[c:] for a, c in zip(arrays, cuts)],
                  f"tokens: {len(arrays)} shards of {dtype}, {total} tokens", False)


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
