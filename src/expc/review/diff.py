"""`expc diff`: two sides (manifests, digest prefixes, specs, or a git revision) -> a semantic diff.

A side is a set of labelled manifests: one for a manifest file or an experiment spec, one per
member for a sweep. Members are paired by label; what only one side has is added or removed.
Each pair is compared leaf by leaf (a JSON array is one leaf: `tags` reads better whole) and the
changes are grouped by manifest section. The derived quantities a reviewer weighs (parameters,
batch, tokens, world size, memory, compute) come from `estimate.py`, old -> new.

Rendering (text, markdown, JSON) lives in `diff_render.py`.
"""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from expc.compile import canonical
from expc.compile.write import source_key
from expc.errors import ExpcError
from expc.project import Project, find_manifest

SECTIONS = ("model", "data", "train", "deepspeed", "hardware", "launch", "logging")
TOP_LEVEL = "top level"  # schema, seed and anything outside the named sections
ABSENT = object()
_MANIFEST_NAME = re.compile(r"[0-9a-f]{64}\.json")  # a leaf one side does not have


@dataclass
class Change:
    path: str  # dotted, e.g. deepspeed.zero_optimization.stage
    old: object  # ABSENT when added
    new: object  # ABSENT when removed


@dataclass
class Derived:
    name: str
    old: float | int
    new: float | int
    unit: str = ""  # "", "GiB", "FLOPs", "device-hours"


@dataclass
class Pair:
    """One manifest on each side (either may be None: an added or removed member)."""

    label: str
    old_digest: str | None
    new_digest: str | None
    changes: dict[str, list[Change]] = field(default_factory=dict)  # section -> changes
    derived: list[Derived] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return self.old_digest != self.new_digest


@dataclass
class Diff:
    old_name: str
    new_name: str
    pairs: list[Pair]

    @property
    def differs(self) -> bool:
        return any(p.differs for p in self.pairs)


@dataclass
class Side:
    """What one argument names: label -> (digest, manifest data)."""

    name: str
    members: dict[str, tuple[str, dict]]


def diff_refs(old_ref: str, new_ref: str, project: Project) -> Diff:
    return diff_sides(load_side(old_ref, project), load_side(new_ref, project))


def diff_spec_against_committed(spec: str, project: Project) -> Diff:
    """A spec as committed -> as it is now: every build of it the index records, with the
    top-level arguments and overrides it was built with (as `expc check` counts them), each
    compiled again with those same arguments; the plain build too when the index records none.
    A build made with arguments is labelled with them (`specs/x.jsonnet --set seed=7`)."""
    from expc.compile import compile_spec
    from expc.compile.write import read_index

    if not Path(spec).is_file():
        raise ExpcError(f"no such spec: {spec}")
    rel = project.relative(spec)
    old, variants = {}, {}
    for digest, entry in read_index(project)["manifests"].items():
        for s in entry["sources"]:
            if s["spec"] == rel:
                tla, sets = s.get("tla", {}), s.get("set", [])
                variants[source_key(rel, None, tla, sets)] = (tla, sets)
                data, _ = canonical.load_manifest(project.manifests / f"{digest}.json")
                old[_build_label(s.get("member") or rel, tla, sets)] = (digest, data)
    new = {}
    for tla, sets in variants.values() or [({}, [])]:
        for m in compile_spec(spec, project, tla, sets):
            new[_build_label(m.member or rel, tla, sets)] = (m.digest, m.data)
    return diff_sides(Side(f"{rel} (committed)", old), Side(rel, new))


def _build_label(label: str, tla: dict, sets: list) -> str:
    """A member's label with the arguments it was built with, as the command line takes them."""
    args = [f"--tla {k}={json.dumps(v)}" for k, v in tla.items()] + [f"--set {x}" for x in sets]
    return " ".join([label, *args])


def diff_sides(old: Side, new: Side) -> Diff:
    single = len(old.members) == 1 and len(new.members) == 1
    if single:  # two experiments: compare them whatever their labels
        (old_label, (od, odata)), = old.members.items()
        (new_label, (nd, ndata)), = new.members.items()
        label = old_label if old_label == new_label else f"{old_label} -> {new_label}"
        pairs = [compare(label, od, odata, nd, ndata)]
    else:
        pairs = []
        for label in sorted(set(old.members) | set(new.members)):
            od, odata = old.members.get(label, (None, None))
            nd, ndata = new.members.get(label, (None, None))
            pairs.append(compare(label, od, odata, nd, ndata))
    return Diff(old.name, new.name, pairs)


def compare(label: str, old_digest, old: dict | None, new_digest, new: dict | None) -> Pair:
    pair = Pair(label, old_digest, new_digest)
    if old is None or new is None or old_digest == new_digest:
        return pair
    old_leaves, new_leaves = leaves(old), leaves(new)
    for path in sorted(set(old_leaves) | set(new_leaves), key=_path_order):
        a, b = old_leaves.get(path, ABSENT), new_leaves.get(path, ABSENT)
        if not _same(a, b):
            pair.changes.setdefault(section_of(path), []).append(Change(path, a, b))
    pair.changes = {s: pair.changes[s] for s in (*SECTIONS, TOP_LEVEL) if s in pair.changes}
    pair.derived = [d for d in derived(old, new) if not _same(d.old, d.new)]
    return pair


def leaves(data, prefix: str = "") -> dict[str, object]:
    """Flatten objects to dotted paths; arrays and scalars are leaves; an empty object is a leaf."""
    if isinstance(data, dict) and data:
        out = {}
        for key, value in data.items():
            out.update(leaves(value, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: data}


def section_of(path: str) -> str:
    head = path.split(".", 1)[0]
    return head if head in SECTIONS else TOP_LEVEL


# Where each derived quantity reads its inputs; a manifest of an older schema may lack some.
_MODEL = ("model.arch",)  # and the arch's own fields: a side that lacks them is skipped below
_WORLD = ("hardware.nodes", "hardware.procs_per_node")
_TOKENS = ("deepspeed.train_batch_size", "model.arch")
_TOTAL = (*_TOKENS, "train.max_steps")


def derived(old: dict, new: dict) -> list[Derived]:
    """The quantities a reviewer weighs, computed by estimate.py on each side. A quantity whose
    inputs one side lacks (a manifest of an older schema) is left out rather than guessed."""
    from expc import estimate
    from expc.fit import has_path

    rows = [
        ("parameters", estimate.held_parameters, _MODEL, ""),
        ("world size", estimate.world_size, _WORLD, ""),
        ("global batch", lambda m: m["deepspeed"]["train_batch_size"], ("deepspeed.train_batch_size",),
         "sequences"),
        ("tokens per step", estimate.tokens_per_step, _TOKENS, "tokens"),
        ("tokens in total", estimate.total_tokens, _TOTAL, "tokens"),
        ("memory per device", lambda m: estimate.memory_per_device(m).total, (*_MODEL, *_WORLD), "GiB"),
        ("compute", estimate.total_flops, (*_MODEL, *_TOTAL), "FLOPs"),
        (f"device-hours at {estimate.DEFAULT_MFU:.0%} MFU", lambda m: estimate.device_hours(m, mfu=estimate.DEFAULT_MFU),
         (*_MODEL, *_TOTAL, "hardware.peak_tflops"), "h"),
    ]
    found = []
    for name, fn, inputs, unit in rows:
        if not all(has_path(m, path) for m in (old, new) for path in inputs):
            continue
        try:
            found.append(Derived(name, fn(old), fn(new), unit))
        except KeyError:  # an older manifest lacks a field its arch now reads
            continue
    return found


def _same(a, b) -> bool:
    # 1 and 1.0 are the same JSON number; True and 1 are not the same value.
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _path_order(path: str):
    return (SECTIONS.index(section_of(path)) if section_of(path) in SECTIONS else len(SECTIONS), path)


# --- sides -------------------------------------------------------------------------------------

def load_side(ref: str, project: Project) -> Side:
    """A manifest path, a digest prefix, or a spec -> its labelled manifests."""
    if ref.endswith((".jsonnet", ".libsonnet", ".cue")):
        from expc.compile import compile_spec

        if not Path(ref).is_file():
            raise ExpcError(f"no such spec: {ref}")
        manifests = compile_spec(ref, project)
        return Side(project.relative(ref), {m.member or m.spec: (m.digest, m.data) for m in manifests})
    path = find_manifest(ref, project)
    data, digest = canonical.load_manifest(path)
    return Side(project.relative(path), {_manifest_label(digest, project): (digest, data)})


def _manifest_label(digest: str, project: Project) -> str:
    """A manifest's label: its index source (spec[member]) when the index knows it."""
    from expc.compile.write import read_index

    sources = read_index(project)["manifests"].get(digest, {}).get("sources", [])
    if sources:
        s = sources[0]
        return f"{s['spec']}[{s['member']}]" if s.get("member") else s["spec"]
    return digest[:12]


# --- git ---------------------------------------------------------------------------------------

def diff_git(rev: str, project: Project) -> Diff:
    """Every manifest the working tree changes against REV, paired by index source.

    A source (spec, member, top-level arguments, overrides) whose digest moved between the index
    at REV and the index in the working tree is one pair; manifest files added or removed that no
    index source names are listed on their own. Untracked manifests count as added.
    """
    folder = project.relative(project.manifests)
    changed: dict[str, str] = {}  # digest -> A | D | M
    listing = _git(project, "diff", "--name-status", "--no-renames", rev, "--", folder + "/")
    untracked = _git(project, "ls-files", "--others", "--exclude-standard", "--", folder + "/")
    for status, path in [line.split("\t", 1) for line in listing.splitlines() if "\t" in line] + \
                        [("A", line) for line in untracked.splitlines()]:
        name = Path(path).name
        if _MANIFEST_NAME.fullmatch(name):
            changed[name[:-5]] = status[:1]

    old_index = _index_at(rev, project)
    from expc.compile.write import read_index

    new_index = read_index(project)
    old_sources, new_sources = _sources_by_key(old_index), _sources_by_key(new_index)

    def old_data(digest):
        where = f"{rev}:{folder}/{digest}.json"
        return canonical.parse_manifest_text(_git(project, "show", where), where)

    def new_data(digest):
        return canonical.load_manifest(project.manifests / f"{digest}.json")[0]

    pairs, covered = [], set()
    for key in sorted(set(old_sources) | set(new_sources)):
        old_label, od = old_sources.get(key, (None, None))
        new_label, nd = new_sources.get(key, (None, None))
        if od == nd:
            continue
        covered |= {od, nd}
        pairs.append(compare(new_label or old_label, od, old_data(od) if od else None,
                             nd, new_data(nd) if nd else None))
    for digest, status in sorted(changed.items()):
        if digest in covered:
            continue
        if status == "A":
            pairs.append(compare(digest[:12], None, None, digest, new_data(digest)))
        elif status == "D":
            pairs.append(compare(digest[:12], digest, old_data(digest), None, None))
        else:  # a content-addressed file edited in place (`expc check` fails on it): show how
            path = project.manifests / f"{digest}.json"
            edited = canonical.parse_manifest_text(path.read_text(encoding="utf-8"), project.relative(path))
            pairs.append(compare(f"{project.relative(path)} (edited in place)", digest, old_data(digest),
                                 canonical.digest(edited), edited))
    return Diff(rev, "working tree", pairs)


def _sources_by_key(index: dict) -> dict[str, tuple[str, str]]:
    """source key (spec, member, tla, set) -> (label, digest)."""
    out = {}
    for digest, entry in index.get("manifests", {}).items():
        for s in entry.get("sources", []):
            label = _build_label(f"{s['spec']}[{s['member']}]" if s.get("member") else s["spec"],
                                 s.get("tla", {}), s.get("set", []))
            out[source_key(s["spec"], s.get("member"), s.get("tla", {}), s.get("set", []))] = (label, digest)
    return out


def _index_at(rev: str, project: Project) -> dict:
    """The index as REV committed it: one file per spec under manifests/index/, or the single
    manifests/index.json of the earlier layout."""
    from expc.compile.write import INDEX_FOLDER, LEGACY_INDEX_FILE, parse_index_file

    folder = project.relative(project.manifests)
    entries: dict = {}
    names = _git(project, "ls-tree", "-r", "--name-only", rev, "--", f"{folder}/{INDEX_FOLDER}/", missing_ok=True)
    for name in names.splitlines():
        if name.endswith(".jsonl"):
            _, sources = parse_index_file(_git(project, "show", f"{rev}:{name}"), f"{rev}:{name}")
            for source in sources:
                digest = source.pop("digest")
                entries.setdefault(digest, {"sources": []})["sources"].append(source)
    legacy = _git(project, "show", f"{rev}:{folder}/{LEGACY_INDEX_FILE}", missing_ok=True)
    if legacy.strip():
        try:
            for digest, entry in json.loads(legacy).get("manifests", {}).items():
                entries.setdefault(digest, {"sources": []})["sources"] += entry.get("sources", [])
        except ValueError as err:
            raise ExpcError(f"{folder}/{LEGACY_INDEX_FILE} at {rev} is not valid JSON: {err}") from None
    return {"manifests": entries}


def _git(project: Project, *args: str, missing_ok: bool = False) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=project.root, capture_output=True, text=True)
    except FileNotFoundError:
        raise ExpcError("--git needs git on PATH") from None
    if out.returncode != 0:
        if missing_ok:
            return ""
        raise ExpcError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout
