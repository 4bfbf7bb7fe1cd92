"""Files pinned by content: the sha256 of every file a run reads (a base model's folder, data
files), hashed once and cached, and checked again before a run.

The cache maps a file's resolved path, size, mtime and ctime (in nanoseconds) to its sha256, in
`$XDG_CACHE_HOME/expc/sha256.json` (default ~/.cache/expc/): a rebuild stats each file and rehashes
only what changed, so pinning a multi-gigabyte base costs a stat per file after the first build.
The ctime is there because the mtime can be set back (`touch -r`, `os.utime`, a copy that keeps
times) and the ctime cannot: any write or time change moves it. A file rewritten in place within
the same nanosecond, at the same size, would be missed; nothing else is.

    sha256_file(path)          the hex digest, through the cache
    pinned_files(manifest)     every (label, path, sha256) a manifest pins
    corpus_files(data, root)   the files a stdlib, text or tokens source reads, in reading order
    corpus_digest(...)         one sha256 over those files (their paths and contents)
    verify(manifest, root)     raise ExpcError naming each pinned file that changed or went missing
    check(manifest, root)      the same problems, split into "changed" and "not here"

May import: the standard library and expc.errors only (the trainer calls verify on every rank).
"""
from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from pathlib import Path

from expc.errors import ExpcError, Problem

CHUNK = 1 << 22  # 4 MiB reads: hashlib releases the GIL and the disk stays busy
MAX_ENTRIES = 20000


class HashCache:
    """(resolved path, size, mtime_ns, ctime_ns) -> sha256, loaded once per process and saved on change."""

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
        key, stamp = str(path), [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
        entry = self.entries.get(key)
        if entry and entry[:3] == stamp:  # an entry of the older (size, mtime) form never matches
            return entry[3]
        digest = _hash(path)
        self.entries[key] = [*stamp, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache atomically; a cache that cannot be written only costs a rehash. Past
        MAX_ENTRIES, entries of files that are gone are dropped."""
        if not self._dirty:
            return
        if len(self.entries) > MAX_ENTRIES:
            self._entries = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        self._dirty = not write_cache_file(self.file, json.dumps(self.entries, sort_keys=True))


def write_cache_file(file: Path, text: str) -> bool:
    """Write a cache file atomically (a temp file, then a rename); True when written. A cache that
    cannot be written only costs the work again, so an OSError is not an error here."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, file)
        return True
    except OSError:
        return False


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "expc"


_CACHE = HashCache()


def sha256_file(path: Path, cache: HashCache | None = None) -> str:
    return sha256_files([path], cache)[0]


def sha256_files(paths, cache: HashCache | None = None) -> list[str]:
    """The digests of several files, through the cache, saved once."""
    cache = cache or _CACHE
    digests = [cache.sha256(Path(p)) for p in paths]
    cache.save()
    return digests


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


def text_files(base: Path, pattern: str, max_files: int | None) -> list[Path]:
    """The files a text corpus reads: the file itself, or a folder's files in sorted order (at
    most max_files), leaving out installed packages, caches and hidden files."""
    if base.is_file():
        return [base]
    if not base.is_dir():
        return []
    return list(_sorted_walk(base, pattern, max_files))


def _sorted_walk(folder: Path, pattern: str, limit: int | None):
    """Files under folder in sorted path order (part by part, as sorted(Path) orders them),
    lazily: with a limit, only the first `limit` are ever listed, so picking 400 files of the
    standard library does not walk all of it."""
    import fnmatch

    count = 0
    stack = [iter(sorted(os.scandir(folder), key=lambda e: e.name))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if _skipped(entry.name):
            continue  # pruned, not filtered: the stdlib's site-packages holds the whole venv
        if entry.is_dir():
            stack.append(iter(sorted(os.scandir(entry.path), key=lambda e: e.name)))
        elif entry.is_file() and fnmatch.fnmatch(entry.name, pattern):
            yield Path(entry.path)
            count += 1
            if limit and count >= limit:
                return


def _skipped(name: str) -> bool:
    return name in ("site-packages", "dist-packages", "__pycache__") or name.startswith(".")


def token_files(base: Path) -> list[Path]:
    """nanoGPT's train.bin and val.bin of a folder, else its .bin shards in sorted order, else the file."""
    if base.is_dir():
        if (base / "train.bin").is_file() and (base / "val.bin").is_file():
            return [base / "train.bin", base / "val.bin"]
        return sorted(p for p in base.glob("*.bin") if p.is_file())
    return [base] if base.is_file() else []


def corpus_files(data: dict, root: Path) -> tuple[Path, list[Path]]:
    """(the folder paths are relative to, the files in reading order) of a stdlib, text or
    tokens source; no files when its path is not there."""
    source = data["source"]
    if source == "stdlib":
        base = Path(sysconfig.get_paths()["stdlib"])
        return base, text_files(base, "*.py", data.get("max_files"))
    base = resolve(root, data["path"])
    if source == "tokens":
        return base, token_files(base)
    return base, text_files(base, "*", data.get("max_files"))


def corpus_digest(base: Path, files: list[Path], cache: HashCache | None = None) -> str:
    """sha256 over "path NUL sha256 LF" of each file in reading order: the contents and the
    order, with paths relative to `base` so the digest does not depend on where it lives."""
    cache = cache or _CACHE
    lines = "".join(f"{(f.relative_to(base).as_posix() if f != base else f.name)}\0{cache.sha256(f)}\n"
                    for f in files)
    cache.save()
    return hashlib.sha256(lines.encode()).hexdigest()


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
    changed, absent = check(manifest, root, cache)
    if changed or absent:
        raise ExpcError(sorted(changed + absent, key=lambda p: p.location or ""))


def check(manifest: dict, root: Path, cache: HashCache | None = None) -> tuple[list[Problem], list[Problem]]:
    """(files whose content differs from the pins, inputs that are not here or not pinned): the
    second kind is expected on a machine that only plans a run (a cluster's data, on a laptop)."""
    cache = cache or _CACHE
    problems, absent = [], []
    for where, path, digest in pinned_files(manifest):
        file = resolve(root, path)
        if not file.is_file():
            absent.append(Problem(f"{path}: the manifest pins this file, and it is missing", where))
            continue
        now = cache.sha256(file)
        if now != digest:
            problems.append(Problem(f"{path} changed since the build (sha256 {digest[:12]} in the manifest, "
                                    f"{now[:12]} now): rebuild the spec to pin the new content, or restore the "
                                    "file", where))
    corpus, missing = _corpus_problems(manifest.get("data", {}), root, cache)
    problems, absent = problems + corpus, absent + missing
    model = manifest.get("model", {})
    if model.get("arch") == "hf_causal_lm" and model.get("revision") is None:
        folder = resolve(root, model["source"])
        if folder.is_dir():
            for extra in sorted(set(folder_files(folder)) - set(model.get("files", {}))):
                problems.append(Problem(f"{model['source'].rstrip('/')}/{extra} is in the base model folder but "
                                        "not pinned by the manifest: rebuild the spec, or remove the file",
                                        "$.model.files"))
    cache.save()
    return problems, absent


def _corpus_problems(data: dict, root: Path, cache: HashCache) -> tuple[list[Problem], list[Problem]]:
    """(changed, absent) for a stdlib, text or tokens corpus."""
    if data.get("source") not in ("stdlib", "text", "tokens"):
        return [], []
    what = "the standard library's files" if data["source"] == "stdlib" else data["path"]
    if "sha256" not in data:
        return [], [Problem(f"the manifest does not pin {what}: it was not there when the manifest was built. "
                            "Build the spec where the data is (the build adds data.sha256), then run that "
                            "manifest", "$.data.sha256")]
    base, files = corpus_files(data, root)
    if not files:
        return [], [Problem(f"{what}: the manifest pins these files, and they are missing", "$.data.sha256")]
    now = corpus_digest(base, files, cache)
    if now != data["sha256"]:
        return [Problem(f"{what} changed since the build (sha256 {data['sha256'][:12]} in the manifest, {now[:12]} "
                        "now): rebuild the spec to pin the new content, or restore the files", "$.data.sha256")], []
    return [], []


def hub_snapshot(source: str, revision: str) -> Path | None:
    """The local copy of a hub model at a commit, in the Hugging Face cache, if one is there."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    folder = Path(hub) / f"models--{source.replace('/', '--')}" / "snapshots" / revision
    return folder if folder.is_dir() else None
