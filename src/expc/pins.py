"""Files pinned by content: the sha256 of every file a run reads (a base model's folder, data
files), hashed once and cached, and checked again before a run.

The cache maps a file's resolved path, size and mtime (in nanoseconds) to its sha256, in
`$XDG_CACHE_HOME/expc/sha256.json` (default ~/.cache/expc/): a rebuild stats each file and rehashes
only what changed, so pinning a multi-gigabyte base costs a stat per file after the first build.
A file rewritten in place within the same nanosecond, at the same size, would be missed; nothing
else is.

    sha256_file(path)          the hex digest, through the cache
    pinned_files(manifest)     every (label, path, sha256) a manifest pins
    verify(manifest, root)     raise ExpcError naming each pinned file that changed or went missing

May import: the standard library and expc.errors only (the trainer calls verify on every rank).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from expc.errors import ExpcError, Problem

CHUNK = 1 << 22  # 4 MiB reads: hashlib releases the GIL and the disk stays busy


class HashCache:
    """(resolved path, size, mtime_ns) -> sha256, loaded once per process and saved on change."""

    def __init__(self, file: Path | None = None):
        self.file = file or cache_dir() / "sha256.json"
        self._entries: dict | None = None
        self._dirty = False

    @property
    def entries(self) -> dict:
        if self._entries is None:
            try:
                self._entries = json.loads(self.file.read_text())
            except (OSError, ValueError):
                self._entries = {}  # no cache, or a damaged one: start again
        return self._entries

    def sha256(self, path: Path) -> str:
        path = path.resolve()
        stat = path.stat()
        key, stamp = str(path), [stat.st_size, stat.st_mtime_ns]
        entry = self.entries.get(key)
        if entry and entry[:2] == stamp:
            return entry[2]
        digest = _hash(path)
        self.entries[key] = [*stamp, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache atomically; a cache that cannot be written only costs a rehash."""
        if not self._dirty:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries, sort_keys=True))
            os.replace(tmp, self.file)
            self._dirty = False
        except OSError:
            pass


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "expc"


_CACHE = HashCache()


def sha256_file(path: Path, cache: HashCache | None = None) -> str:
    cache = cache or _CACHE
    digest = cache.sha256(Path(path))
    cache.save()
    return digest


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def resolve(root: Path, path: str) -> Path:
    """A manifest's path: absolute as written, else relative to the project root."""
    p = Path(path)
    return p if p.is_absolute() else Path(root) / p


def folder_files(folder: Path) -> list[str]:
    """Every regular file under a folder, as sorted POSIX paths inside it; hidden files and
    folders (.git, .cache) are not part of a model."""
    found = []
    for path in folder.rglob("*"):
        inside = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in inside.parts):
            found.append(inside.as_posix())
    return sorted(found)


def pinned_files(manifest: dict) -> list[tuple[str, str, str]]:
    """(JSON path, file path as the manifest gives it, sha256) of every file the manifest pins."""
    found = []
    model = manifest.get("model", {})
    if model.get("arch") == "hf_causal_lm" and model.get("revision") is None:
        for name, digest in sorted(model.get("files", {}).items()):
            found.append((f"$.model.files[{json.dumps(name)}]", f"{model['source'].rstrip('/')}/{name}", digest))
    data = manifest.get("data", {})
    for split in ("train", "val"):
        entry = data.get(split)
        if isinstance(entry, dict) and "sha256" in entry:
            found.append((f"$.data.{split}.sha256", entry["path"], entry["sha256"]))
    return found


def verify(manifest: dict, root: Path, cache: HashCache | None = None) -> None:
    """Every pinned file exists with its pinned content, and a pinned model folder holds no file
    the manifest does not pin (transformers would read a stray weights file)."""
    cache = cache or _CACHE
    problems = []
    for where, path, digest in pinned_files(manifest):
        file = resolve(root, path)
        if not file.is_file():
            problems.append(Problem(f"{path}: the manifest pins this file, and it is missing", where))
            continue
        now = cache.sha256(file)
        if now != digest:
            problems.append(Problem(f"{path} changed since the build (sha256 {digest[:12]} in the manifest, "
                                    f"{now[:12]} now): rebuild the spec to pin the new content, or restore the "
                                    "file", where))
    model = manifest.get("model", {})
    if model.get("arch") == "hf_causal_lm" and model.get("revision") is None:
        folder = resolve(root, model["source"])
        if folder.is_dir():
            for extra in sorted(set(folder_files(folder)) - set(model.get("files", {}))):
                problems.append(Problem(f"{model['source'].rstrip('/')}/{extra} is in the base model folder but "
                                        "not pinned by the manifest: rebuild the spec, or remove the file",
                                        "$.model.files"))
    cache.save()
    if problems:
        raise ExpcError(problems)


def hub_snapshot(source: str, revision: str) -> Path | None:
    """The local copy of a hub model at a commit, in the Hugging Face cache, if one is there."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    folder = Path(hub) / f"models--{source.replace('/', '--')}" / "snapshots" / revision
    return folder if folder.is_dir() else None
