"""Stage 7, write: manifests -> `manifests/<digest>.json` and the index, `manifests/index/`.

A manifest file is written once: an identical existing file is left alone, a differing one is
refused (someone edited it by hand). A build writes its files into a staging folder of its own
inside manifests/ as they compile (Staging) and renames them into place once every spec has
compiled; every other write goes to a temporary file in the same folder and is renamed into
place. Either way a reader never sees half a file, and a failed build leaves none.

The index maps each digest to its sources (spec, sweep member, top-level arguments, overrides,
the `expc search` trials it is: {search name: [trial numbers]}) and the files its evaluation read. It is outside the hash: moving a spec changes the index, never
a digest. Rebuilding a source moves that source to its new digest.

It is kept as one small file per spec, `manifests/index/<spec path>.jsonl` (for
specs/sweep_lr.jsonnet: manifests/index/specs/sweep_lr.jsonnet.jsonl), so that a build reads and
rewrites only the files of the specs it built, whatever the size of the rest, and two pull
requests that build different specs never touch the same index file. Each file is JSON Lines:

    {"imports": [...], "schema": "expc/index/v2", "spec": "specs/sweep_lr.jsonnet"}
    {"digest": "<64 hex>", "member": "lr=1e-3"}
    {"digest": "<64 hex>", "member": "lr=3e-4"}

a header naming the spec and the files its evaluation read, then one line per source, sorted by
source, each with the source's fields (`member`, `tla`, `set`, and any others a source carries)
and its `imports` only where they differ from the header's. A rebuild that moves one member to
a new digest changes one line.

Writers hold a lock on the index folder (flock) while they read and rewrite a spec's file, so
concurrent builds never lose each other's entries. The single `manifests/index.json` of earlier
versions (schema expc/index/v1) is still read; the next write converts it to this layout and
removes it.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from pathlib import Path

from expc.errors import ExpcError
from expc.project import Project

from .canonical import pretty

INDEX_SCHEMA = "expc/index/v2"
LEGACY_INDEX_SCHEMA = "expc/index/v1"  # manifests/index.json: one file for every spec
INDEX_FOLDER = "index"
LEGACY_INDEX_FILE = "index.json"
_SUFFIX = ".jsonl"


def write(manifests, project: Project) -> None:
    folder = project.manifests
    folder.mkdir(parents=True, exist_ok=True)
    pending = []
    for m in manifests:  # check every target before writing any
        path = folder / f"{m.digest}.json"
        body = pretty(m.data)
        if path.exists():
            _refuse_edited(path, body, project)
            continue
        pending.append((path, body))
    for path, body in pending:
        write_atomic(path, body)
    update_index(manifests, project)


class Staging:
    """One build's manifest files, written as they compile into a folder of their own inside
    manifests/ (`.staging-<pid>-<random>/`, on the same file system, so moving a file into place
    is a rename), then moved into place all together once every spec has compiled (`commit`).
    A build that fails, or is stopped, leaves nothing in manifests/: the folder goes with it, and
    one left by a killed build is removed by the next. A manifest handed to `take` lets its data
    go (read back from its file if asked for), so a build holds no sweep whole.

    `observe(manifest)` is called with each manifest while its data is still in hand.
    """

    PREFIX = ".staging-"

    def __init__(self, project: Project, observe=None):
        self.project, self.observe = project, observe
        self.folder: Path | None = None
        self.folder_fd: int | None = None
        self.staged: set[str] = set()
        self.committed = False
        self.made_manifests = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._close_folder()
        if self.folder is not None:
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)
            if self.made_manifests and not self.committed:  # a failed first build leaves no manifests/
                with contextlib.suppress(OSError):
                    self.project.manifests.rmdir()
        return False

    def take(self, m, body: str | None = None):
        """`body`: the manifest's file text, when the compile has made it (canonical.pretty's)."""
        if self.observe:
            self.observe(m)
        if m.digest not in self.staged:
            if self.folder is None:
                self.folder = self._make_folder(m.digest)
            # Written in place: no reader looks in the staging folder, and a file cut short there
            # goes with the folder. (Creating a file is most of a big sweep's cost a member.)
            try:
                _write_new(self._folder_fd(), f"{m.digest}.json", (pretty(m.data) if body is None else body).encode())
            except OSError as err:  # named as the manifest it was to be
                raise OSError(err.errno, err.strerror, str(self.project.manifests / f"{m.digest}.json")) from None
            self.staged.add(m.digest)
        del m.data
        m._stored = self.locate
        return m

    def _folder_fd(self) -> int:
        """The staging folder, open: a file made relative to it is not looked up from / each time."""
        if self.folder_fd is None:
            self.folder_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        return self.folder_fd

    def _close_folder(self) -> None:
        if self.folder_fd is not None:
            os.close(self.folder_fd)
            self.folder_fd = None

    def locate(self, digest: str) -> Path:
        """A taken manifest's file: in the staging folder until the commit, in manifests/ after."""
        if self.committed or digest not in self.staged:
            return self.project.manifests / f"{digest}.json"
        return self.folder / f"{digest}.json"

    def commit(self, manifests) -> None:
        """Every target checked before any is moved: an existing identical file is left alone, a
        differing one refused (someone edited it by hand). Then the moves, then the index."""
        folder = self.project.manifests
        folder.mkdir(parents=True, exist_ok=True)
        # a big build lists the folder once rather than a stat a manifest; a small one in a big
        # folder does not list it
        existing = set(os.listdir(folder)) if len(manifests) > 1000 else None
        moves = {}  # names (two members may be one manifest)
        for m in manifests:
            if m.digest not in self.staged:  # compiled without this staging: staged now, like the rest
                self.take(m)
            name = f"{m.digest}.json"
            there = name in existing if existing is not None else os.path.exists(os.path.join(folder, name))
            if there:
                _refuse_edited(folder / name, (self.folder / name).read_text(encoding="utf-8"), self.project)
            else:
                moves[name] = None
        if moves:  # names, moved between the two folders open: no path looked up from / each time
            target = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for name in moves:
                    os.replace(name, name, src_dir_fd=self._folder_fd(), dst_dir_fd=target)
            except OSError as err:
                raise OSError(err.errno, err.strerror, str(folder / name)) from None
            finally:
                os.close(target)
        self.committed = True
        self._close_folder()
        update_index(manifests, self.project)

    def _make_folder(self, digest: str) -> Path:
        import secrets

        folder = self.project.manifests
        try:
            self.made_manifests = not folder.is_dir()
            folder.mkdir(parents=True, exist_ok=True)
            _remove_abandoned_staging(folder)
            staging = folder / f"{self.PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            staging.mkdir()
        except OSError as err:  # a read-only or full manifests/: named as the manifest to be written
            raise OSError(err.errno, err.strerror, str(folder / f"{digest}.json")) from None
        return staging


def _write_new(folder_fd: int, name: str, data: bytes) -> None:
    """A new file `name` in the folder open as `folder_fd`, holding `data`: three system calls, where
    open() makes seven (a creation is most of what a big sweep's build spends a member)."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666, dir_fd=folder_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _refuse_edited(path: Path, body: str, project: Project) -> None:
    """An existing manifest file must hold `body`: else someone edited it by hand."""
    if path.read_text(encoding="utf-8") != body:
        raise ExpcError(f"{project.relative(path)} exists with different content; it was edited "
                        "by hand. Remove it and build again.")


def _remove_abandoned_staging(folder: Path) -> None:
    """Staging folders of builds that were killed (their process is gone)."""
    import shutil

    for staging in folder.glob(Staging.PREFIX + "*"):
        pid = staging.name[len(Staging.PREFIX):].split("-")[0]
        try:
            os.kill(int(pid), 0)
            continue  # a build still running
        except ProcessLookupError:
            shutil.rmtree(staging, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


def source_key(spec: str, member, tla: dict, sets: list) -> str:
    return json.dumps([spec, member, tla, sets], sort_keys=True)


def _key_of(source: dict) -> str:
    return source_key(source["spec"], source.get("member"), source.get("tla", {}), source.get("set", []))


# --- reading ---------------------------------------------------------------------------------

def read_index(project: Project, spec: str | None = None) -> dict:
    """The index as one object, {"schema", "manifests": {digest: {"sources": [...]}}}, whatever its
    layout on disk; `spec`: only that spec's sources (one file read)."""
    with _shared_lock(project):
        return _read_index(project, spec)


def _read_index(project: Project, spec: str | None) -> dict:
    entries: dict[str, dict] = {}
    covered = set()
    for path in [index_path(project, spec)] if spec else index_files(project):
        if path.is_file():
            file_spec, sources = parse_index_file(path.read_text(encoding="utf-8"), project.relative(path))
            covered.add(file_spec)
            for source in sources:
                _add(entries, source)
    legacy = project.manifests / LEGACY_INDEX_FILE
    if legacy.is_file():  # not converted yet: its entries for specs that have no file of their own
        for digest, entry in _read_legacy(legacy, project).items():
            for source in entry.get("sources", []):
                if source["spec"] not in covered and spec in (None, source["spec"]):
                    _add(entries, {**source, "digest": digest})
    for entry in entries.values():
        entry["sources"].sort(key=_key_of)
    return {"schema": INDEX_SCHEMA, "manifests": dict(sorted(entries.items()))}


def index_path(project: Project, spec: str) -> Path:
    """manifests/index/<spec path>.jsonl. A spec outside the project (an absolute path, `..`)
    keeps its path below the folder, its `..` steps spelled `%2E%2E`."""
    parts = [("%2E%2E" if p == ".." else p) for p in Path(spec).parts if p not in ("/", "\\")]
    return project.manifests / INDEX_FOLDER / Path(*parts).with_name(parts[-1] + _SUFFIX)


def index_files(project: Project) -> list[Path]:
    folder = project.manifests / INDEX_FOLDER
    return sorted(folder.rglob("*" + _SUFFIX)) if folder.is_dir() else []


def parse_index_file(text: str, where: str) -> tuple[str, list[dict]]:
    """A spec's index file -> (its spec, [source with its `digest`])."""
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        records = [json.loads(line) for line in lines]
    except ValueError as err:
        raise ExpcError(f"not valid JSON Lines: {err}", where) from None
    header = records[0] if records and isinstance(records[0], dict) else {}
    if header.get("schema") != INDEX_SCHEMA or not isinstance(header.get("spec"), str):
        raise ExpcError(f"unknown index format {header.get('schema')!r} (expected {INDEX_SCHEMA!r})", where)
    spec, imports = header["spec"], header.get("imports", [])
    sources = []
    for record in records[1:]:
        if not isinstance(record, dict) or not isinstance(record.get("digest"), str):
            raise ExpcError("an index line without a digest", where)
        sources.append({"spec": spec, "imports": imports, **record})
    return spec, sources


def _read_legacy(path: Path, project: Project) -> dict:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ExpcError(f"not valid JSON: {err}", project.relative(path)) from None
    if index.get("schema") != LEGACY_INDEX_SCHEMA:
        raise ExpcError(f"unknown index format {index.get('schema')!r} (expected {LEGACY_INDEX_SCHEMA!r})",
                        project.relative(path))
    return index.get("manifests", {})


def _add(entries: dict, source: dict) -> None:
    source = dict(source)
    digest = source.pop("digest")
    entries.setdefault(digest, {"sources": []})["sources"].append(source)


# --- writing ---------------------------------------------------------------------------------

def update_index(manifests, project: Project) -> None:
    """Record each manifest's source, moving a rebuilt source off its previous digest. Reads and
    rewrites only the index files of the specs built."""
    by_spec: dict[str, list] = {}
    for m in manifests:
        by_spec.setdefault(m.spec, []).append(m)
    with index_lock(project):
        for spec_manifests in by_spec.values():
            _update_spec_index(spec_manifests, project)


def _update_spec_index(manifests, project: Project) -> None:
    index = _read_index(project, manifests[0].spec)  # the lock is held: no shared lock on top
    entries = index["manifests"]
    rebuilt = {source_key(m.spec, m.member, m.tla, m.set) for m in manifests}
    searches: dict[str, dict] = {}  # a rebuilt source keeps the search trials it was
    for digest in list(entries):  # a rebuilt source leaves its previous digest
        sources = []
        for s in entries[digest]["sources"]:
            key = source_key(s["spec"], s.get("member"), s.get("tla", {}), s.get("set", []))
            if key not in rebuilt:
                sources.append(s)
            elif s.get("search"):
                searches[key] = s["search"]
        if sources:
            entries[digest]["sources"] = sources
        else:
            del entries[digest]
    for m in manifests:
        entry = entries.setdefault(m.digest, {"sources": []})
        source = {"spec": m.spec, "imports": m.imports}
        if m.member is not None:
            source["member"] = m.member
        if m.tla:
            source["tla"] = m.tla
        if m.set:
            source["set"] = m.set
        search = trials_of(searches.get(source_key(m.spec, m.member, m.tla, m.set), {}), m.search)
        if search:
            source["search"] = search
        entry["sources"].append(source)
    write_spec_index(project, manifests[0].spec, entries)


def write_spec_index(project: Project, spec: str, entries: dict) -> None:
    """Write one spec's index file from {digest: {"sources": [...]}} (its sources only); no
    sources: remove the file. Call with index_lock held."""
    sources = sorted(({**s, "digest": d} for d, e in entries.items() for s in e["sources"]), key=_key_of)
    path = index_path(project, spec)
    if not sources:
        path.unlink(missing_ok=True)
        return
    # The header's imports are the most common list; a source that read other files says so.
    counts = Counter(json.dumps(s.get("imports", [])) for s in sources)
    common = json.loads(min(counts, key=lambda text: (-counts[text], text)))
    lines = [json.dumps({"imports": common, "schema": INDEX_SCHEMA, "spec": spec}, sort_keys=True)]
    for source in sources:
        record = {k: v for k, v in source.items() if k != "spec" and not (k == "imports" and v == common)}
        lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(lines) + "\n")


def replace_index(project: Project, entries: dict) -> None:
    """Make the index exactly {digest: {"sources": [...]}} (`expc check --prune`): every spec's
    file rewritten, files of specs left without sources removed."""
    by_spec: dict[str, dict] = {}
    for digest, entry in entries.items():
        for s in entry.get("sources", []):
            by_spec.setdefault(s["spec"], {}).setdefault(digest, {"sources": []})["sources"].append(s)
    with index_lock(project):
        for path in index_files(project):
            spec, _ = parse_index_file(path.read_text(encoding="utf-8"), project.relative(path))
            if spec not in by_spec:
                path.unlink()
        for spec, spec_entries in by_spec.items():
            write_spec_index(project, spec, spec_entries)


@contextlib.contextmanager
def index_lock(project: Project):
    """Hold the index folder's lock (an flock on the folder itself: no lock file to commit or
    leave behind), converting a manifests/index.json of the earlier layout on the way in."""
    folder = project.manifests / INDEX_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no flock (Windows): builds there are not safe to run concurrently
        fcntl = None
    fd = os.open(folder, os.O_RDONLY)
    try:
        if fcntl:
            fcntl.flock(fd, fcntl.LOCK_EX)
        _convert_legacy(project)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _shared_lock(project: Project):
    """Readers wait while a writer holds the lock: they see an index before or after a build,
    never halfway through one that writes several specs' files."""
    folder = project.manifests / INDEX_FOLDER
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # no index folder yet (or no flock): nothing to wait for
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _convert_legacy(project: Project) -> None:
    """manifests/index.json (one file for every spec) -> one file per spec, then remove it. A spec
    that already has its own file keeps it (it was written later)."""
    legacy = project.manifests / LEGACY_INDEX_FILE
    if not legacy.is_file():
        return
    by_spec: dict[str, dict] = {}
    for digest, entry in _read_legacy(legacy, project).items():
        for s in entry.get("sources", []):
            by_spec.setdefault(s["spec"], {}).setdefault(digest, {"sources": []})["sources"].append(s)
    for spec, entries in by_spec.items():
        if not index_path(project, spec).is_file():
            write_spec_index(project, spec, entries)
    legacy.unlink()


def trials_of(search: dict, trial: tuple[str, int] | None) -> dict:
    """A source's `search` field, {search name: [trial numbers]}, with `trial` added: one
    manifest is every trial (of any search) that proposed the same arguments."""
    out = {name: list(numbers) for name, numbers in search.items()}
    if trial:
        name, number = trial
        out[name] = sorted(set(out.get(name, [])) | {number})
    return dict(sorted(out.items()))


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename it over `path`.

    The temporary name is unique per process and call (O_EXCL refuses a clash), which is cheaper
    than tempfile's random names when a sweep writes a thousand files.
    """
    global _temp_counter
    _temp_counter += 1
    tmp = path.parent / f".{path.name}.{os.getpid()}.{_temp_counter}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as err:  # a full or read-only disk: name the file being written, not the temporary
        if tmp.exists():  # (on a read-only file system even unlinking a missing file fails)
            tmp.unlink()
        raise OSError(err.errno, err.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_temp_counter = 0
