"""Eight `expc build`s at once, of sweeps that overlap (the same members built by several of
them, two specs sharing the index folder): afterwards every manifest is whole, the index holds
every source once, and `expc check` agrees with the specs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from expc.compile.canonical import load_manifest
from expc.compile.write import read_index
from expc.project import Project

EXPC = Path(sys.executable).parent / "expc"


def test_eight_concurrent_builds_of_overlapping_sweeps(proj):
    # build i sweeps seeds i..i+2 of one spec (seed 3 is built by three of them) or of the other
    commands = [[str(EXPC), "build", "specs/one.jsonnet" if i % 2 else "specs/two.jsonnet",
                 "--sweep", "seed=" + ",".join(str(s) for s in range(i // 2, i // 2 + 3))] for i in range(8)]
    builds = [subprocess.Popen(c, cwd=proj, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for c in commands]
    outputs = [b.communicate(timeout=120) for b in builds]
    assert [b.returncode for b in builds] == [0] * 8, [err for _, err in outputs]

    printed = {line for out, _ in outputs for line in out.splitlines()}
    manifests = sorted((proj / "manifests").glob("*.json"))
    assert {f"manifests/{p.name}" for p in manifests} == printed
    for path in manifests:
        load_manifest(path)  # whole, and hashes to its name
    assert not list((proj / "manifests").rglob("*.tmp"))  # no temporary file left behind

    sources = [(s["spec"], s.get("member"), tuple(s.get("set", [])))
               for entry in read_index(Project(proj))["manifests"].values() for s in entry["sources"]]
    # one.jsonnet: one member per seed 0..5; two.jsonnet: members a and b per seed
    expected = {("specs/one.jsonnet", None, (f"seed={s}",)) for s in range(6)}
    expected |= {("specs/two.jsonnet", m, (f"seed={s}",)) for m in "ab" for s in range(6)}
    assert sorted(sources) == sorted(expected)

    check = subprocess.run([str(EXPC), "check"], cwd=proj, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def _record_members(root: str, writer: int) -> None:
    from expc.compile import Manifest
    from expc.compile.write import update_index

    for i in range(25):
        member = f"w{writer}-m{i}"
        update_index([Manifest({}, f"{writer:02d}{i:062d}", "specs/s.jsonnet", member, {}, [], ["specs/s.jsonnet"])],
                     Project(Path(root)))


def test_index_writers_at_once_lose_no_entry(tmp_path):
    """The builds above spend most of their time evaluating, so their index writes seldom meet:
    here eight processes do nothing but rewrite one spec's index file, 25 times each."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_record_members, args=(str(tmp_path), w)) for w in range(8)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    assert [w.exitcode for w in writers] == [0] * 8
    members = {s["member"] for e in read_index(Project(tmp_path))["manifests"].values() for s in e["sources"]}
    assert members == {f"w{w}-m{i}" for w in range(8) for i in range(25)}
