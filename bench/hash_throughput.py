"""sha256 throughput of pinning a large file, and the cost of a rebuild through the hash cache.

    .venv/bin/python bench/hash_throughput.py [--gib 3] [--folder /tmp]

Writes a file of random bytes (--gib GiB), then times expc.pins.sha256_file three ways: the first
hash (the file is in the page cache, just written: this measures hashing, not the disk), a second
call (a stat and a cache lookup), and hashlib alone on the same bytes, for comparison. Prints
GiB/s for the first and milliseconds for the cached call. The file is removed afterwards.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

from expc.pins import HashCache, sha256_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=3.0)
    parser.add_argument("--folder", default=tempfile.gettempdir())
    args = parser.parse_args()
    size = int(args.gib * (1 << 30))
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        path = Path(tmp) / "weights.bin"
        chunk = os.urandom(1 << 24)
        with open(path, "wb") as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)
        cache = HashCache(Path(tmp) / "cache.json")
        start = time.perf_counter()
        digest = sha256_file(path, cache)
        first = time.perf_counter() - start
        start = time.perf_counter()
        assert sha256_file(path, cache) == digest
        cached = time.perf_counter() - start
        start = time.perf_counter()
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        plain = time.perf_counter() - start
        gib = size / (1 << 30)
        print(f"{gib:.2f} GiB: first hash {first:.2f} s ({gib / first:.2f} GiB/s), hashlib alone {plain:.2f} s "
              f"({gib / plain:.2f} GiB/s), rebuild through the cache {cached * 1000:.2f} ms")


if __name__ == "__main__":
    main()
