"""`expc check`: the specs and the committed manifests agree -> a list of findings (empty when so).

Every spec under specs/ is compiled in memory (a spec the index records only with top-level
arguments or overrides is compiled with exactly those instead), and the result is held against
manifests/:

    stale       the index says a source built manifest X, but it now compiles to Y
    missing     a source compiles to a manifest that is not committed (and the index knows no older one)
    orphaned    a committed manifest that no source produces (`--prune` removes it)
    rehash      a committed manifest whose content does not hash to its name, or is not in its pretty form
    index       the index (manifests/index/<spec>.jsonl) disagrees with what the sources produce
    compile     a spec that does not compile at all

Each finding names the file and the command that fixes it. Nothing is written unless `prune`.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from expc.compile import Manifest, canonical, compile_spec
from expc.compile.write import LEGACY_INDEX_FILE, index_path, read_index, replace_index, source_key
from expc.errors import ExpcError
from expc.project import Project

_MANIFEST_NAME = re.compile(r"[0-9a-f]{64}\.json")


@dataclass(frozen=True)
class Finding:
    kind: str  # stale | missing | orphaned | rehash | index | compile
    path: str  # the file at fault, project-relative
    message: str
    fix: str  # the command (or action) that resolves it

    def render(self) -> str:
        return f"{self.kind}: {self.path}: {self.message}\n  fix: {self.fix}"


@dataclass
class CheckReport:
    findings: list[Finding]
    specs: int  # specs compiled
    manifests: int  # manifests those specs produce
    pruned: list[str]  # manifest files removed by --prune
    unchecked: list[str] = field(default_factory=list)  # CUE specs, where no CUE engine is found

    def to_json(self) -> dict:
        return {"ok": not self.findings, "specs": self.specs, "manifests": self.manifests,
                "pruned": self.pruned, "unchecked": self.unchecked,
                "findings": [asdict(f) for f in self.findings]}


def check(project: Project, prune: bool = False) -> CheckReport:
    index = read_index(project)
    recorded = _recorded_sources(index)
    expected, compile_findings, failed = _compile_sources(project, recorded)
    pruned = _prune(project, index, expected, failed) if prune else []
    if pruned or prune:
        index = read_index(project)
        recorded = _recorded_sources(index)
    findings = compile_findings + _compare(project, index, recorded, expected, failed)
    findings.sort(key=lambda f: (f.path, f.kind, f.message))
    unchecked = [] if cue_available() else [project.relative(s) for s in project.spec_files() if s.suffix == ".cue"]
    return CheckReport(findings, len({m.spec for m in expected.values()}),
                       len({m.digest for m in expected.values()}), pruned, unchecked)


def _compare(project, index, recorded, expected, failed) -> list[Finding]:
    findings = []
    committed = _committed(project)
    produced = {m.digest for m in expected.values()}
    superseded = set()  # old manifests of stale sources: reported once, as stale

    for key, m in sorted(expected.items()):
        build = _build_command(m)
        old = recorded.get(key, {}).get("digest")
        if m.digest not in committed:
            if old and old != m.digest:
                superseded.add(old)
                findings.append(Finding(
                    "stale", m.spec, f"{m.label} now compiles to {m.short}, but the committed manifest "
                    f"is {old[:12]}", f"{build}, then `expc check --prune` to remove {old[:12]}"))
            else:
                findings.append(Finding("missing", m.spec, f"{m.label} compiles to {m.short}, which "
                                        "is not committed", build))
            continue
        entry = recorded.get(key)
        if entry is None or entry["digest"] != m.digest or entry["imports"] != m.imports:
            said = ("has no entry for it" if entry is None else
                    f"maps it to {entry['digest'][:12]}" if entry["digest"] != m.digest else
                    "records different imports for it")
            findings.append(Finding("index", _index_file(project, m.spec),
                                    f"{m.label} compiles to {m.short}, but the index {said}", build))

    for digest, path in committed.items():
        rel = project.relative(path)
        problem = _rehash_problem(path)
        if problem:
            sources = ", ".join(s["spec"] for s in index["manifests"].get(digest, {}).get("sources", []))
            fix = (f"it was edited by hand: restore it with `git checkout -- {rel}`, or remove it and "
                   + (f"run `expc build {sources}`" if sources else "rebuild its spec"))
            findings.append(Finding("rehash", rel, problem, fix))
        elif digest not in produced and digest not in superseded:
            findings.append(Finding("orphaned", rel, "no spec produces this manifest",
                                    "`expc check --prune` removes it (or restore the spec that built it)"))

    for key, entry in sorted(recorded.items()):
        if key not in expected and key not in failed:
            gone = ("that spec no longer exists" if not (project.root / entry["spec"]).is_file()
                    else "the spec no longer produces it")
            findings.append(Finding("index", _index_file(project, entry["spec"]),
                                    f"records {_label(entry)} -> {entry['digest'][:12]}, but {gone}",
                                    "`expc check --prune` drops the entry"))
    for digest, entry in index["manifests"].items():
        if digest not in committed:
            findings.append(Finding("index", _index_file(project, entry["sources"][0]["spec"]),
                                    f"names {digest[:12]}, but manifests/{digest}.json does not exist",
                                    "`expc check --prune` drops the entry, or rebuild its spec"))
    return findings


def _committed(project: Project) -> dict[str, Path]:
    if not project.manifests.is_dir():
        return {}
    return {p.stem: p for p in sorted(project.manifests.glob("*.json")) if _MANIFEST_NAME.fullmatch(p.name)}


def _recorded_sources(index: dict) -> dict[str, dict]:
    """source key -> {digest, imports, spec, member, tla, set} from the index."""
    out = {}
    for digest, entry in index["manifests"].items():
        for s in entry.get("sources", []):
            key = source_key(s["spec"], s.get("member"), s.get("tla", {}), s.get("set", []))
            out[key] = {"digest": digest, "imports": s.get("imports", []), "spec": s["spec"],
                        "member": s.get("member"), "tla": s.get("tla", {}), "set": s.get("set", [])}
    return out


def _compile_sources(project: Project, recorded: dict):
    """Compile every spec (plain, or with its recorded arguments) -> (source key -> Manifest,
    findings for specs that fail, source keys of specs that exist but failed)."""
    builds: dict[str, set] = {}  # spec -> {(tla json, set json)}
    for entry in recorded.values():
        if (project.root / entry["spec"]).is_file():
            builds.setdefault(entry["spec"], set()).add((json.dumps(entry["tla"], sort_keys=True),
                                                         json.dumps(entry["set"])))
    for spec in project.spec_files():
        rel = project.relative(spec)
        if rel not in builds:  # never built: its plain build is what it should produce
            builds[rel] = {("{}", "[]")}
    expected, findings, failed = {}, [], set()
    for spec, variants in sorted(builds.items()):
        if spec.endswith(".cue") and not cue_available():
            # No CUE engine here (no cue binary, no Node): CUE specs are left unchecked rather than
            # failed, and so are their index entries; `expc build` of one says what is missing.
            failed |= {k for k, e in recorded.items() if e["spec"] == spec}
            continue
        for tla_text, set_text in sorted(variants):
            tla, sets = json.loads(tla_text), json.loads(set_text)
            try:
                manifests = compile_spec(project.root / spec, project, tla, sets)
            except ExpcError as err:
                args = "".join(f" --tla {k}={json.dumps(v)}" for k, v in tla.items())
                args += "".join(f" --set {s}" for s in sets)
                findings.append(Finding("compile", spec, err.render().replace("\n", "\n  "),
                                        f"fix the spec until `expc build {spec}{args}` succeeds"))
                failed |= {k for k, e in recorded.items() if e["spec"] == spec}
                continue
            for m in manifests:
                expected[source_key(m.spec, m.member, m.tla, m.set)] = m
    return expected, findings, failed


def cue_available() -> bool:
    from expc.compile.cue import cue_engine

    try:
        cue_engine()
    except ExpcError:
        return False
    return True


def _rehash_problem(path: Path) -> str | None:
    text = path.read_text(encoding="utf-8")
    try:
        data = canonical.parse_manifest_text(text, str(path))
    except ExpcError as err:
        return err.problems[0].message
    actual = canonical.digest(data)
    if actual != path.stem:
        return f"content hashes to {actual[:12]}, not to its name"
    if text != canonical.pretty(data):
        return "content hashes to its name but is not in the pretty form expc writes"
    return None


def _prune(project, index, expected, failed) -> list[str]:
    """Remove manifest files and index entries that no source produces. A file that does not
    re-hash is left for its owner to look at; sources of a spec that fails to compile are kept."""
    produced = {m.digest for m in expected.values()}
    removed = []
    for digest, path in _committed(project).items():
        if digest not in produced and not _rehash_problem(path):
            removed.append(project.relative(path))
            path.unlink()
    keep = set(expected) | set(failed)
    entries = {}
    for digest, entry in index["manifests"].items():
        if not (project.manifests / f"{digest}.json").exists():
            continue
        sources = [s for s in entry.get("sources", [])
                   if source_key(s["spec"], s.get("member"), s.get("tla", {}), s.get("set", [])) in keep]
        if sources:
            entries[digest] = {**entry, "sources": sources}
    if entries != index["manifests"] or (project.manifests / LEGACY_INDEX_FILE).exists():
        replace_index(project, entries)  # also converts a manifests/index.json of the earlier layout
    return removed


def _index_file(project: Project, spec: str) -> str:
    """The index file that records `spec` (manifests/index.json while not converted yet)."""
    legacy = project.manifests / LEGACY_INDEX_FILE
    path = index_path(project, spec)
    return project.relative(legacy if legacy.is_file() and not path.is_file() else path)


def _build_command(m: Manifest) -> str:
    args = "".join(f" --tla {k}={json.dumps(v)}" for k, v in m.tla.items())
    args += "".join(f" --set {s}" for s in m.set)
    return f"`expc build {m.spec}{args}`"


def _label(entry: dict) -> str:
    return f"{entry['spec']}[{entry['member']}]" if entry.get("member") else entry["spec"]
