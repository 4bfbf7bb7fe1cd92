"""write: atomic files, identical manifests skipped, differing ones refused, the index kept."""
import json
import os

import pytest

from expc.compile import Manifest
from expc.compile.canonical import canonicalize, digest, pretty
from expc.errors import ExpcError
from expc.project import Project
from expc.compile.write import read_index, write, write_atomic


def manifest(data, spec="specs/a.jsonnet", member=None, sets=()):
    data = canonicalize(data)
    return Manifest(data, digest(data), spec, member, {}, list(sets), [spec, "lib/expc.libsonnet"])


@pytest.fixture
def proj(tmp_path):
    return Project(tmp_path)


def files(proj):
    return sorted(p.name for p in (proj.manifests).iterdir())


def test_writes_pretty_body_and_index(proj):
    m = manifest({"b": 1, "a": 0.5})
    write([m], proj)
    assert files(proj) == [f"{m.digest}.json", "index"]
    assert (proj.manifests / f"{m.digest}.json").read_text() == pretty(m.data) == '{\n  "a": 0.5,\n  "b": 1\n}\n'
    assert (proj.manifests / "index" / "specs" / "a.jsonnet.jsonl").read_text() == (
        '{"imports": ["specs/a.jsonnet", "lib/expc.libsonnet"], "schema": "expc/index/v2", "spec": "specs/a.jsonnet"}\n'
        f'{{"digest": "{m.digest}"}}\n')
    assert read_index(proj) == {"schema": "expc/index/v2", "manifests": {m.digest: {"sources": [
        {"spec": "specs/a.jsonnet", "imports": ["specs/a.jsonnet", "lib/expc.libsonnet"]}]}}}


def test_identical_file_is_left_alone(proj):
    m = manifest({"a": 1})
    write([m], proj)
    path = proj.manifests / f"{m.digest}.json"
    os.utime(path, ns=(1, 1))
    write([m], proj)
    assert path.stat().st_mtime_ns == 1


def test_differing_file_is_refused_and_nothing_written(proj):
    edited, fresh = manifest({"a": 1}), manifest({"a": 2}, spec="specs/b.jsonnet")
    write([edited], proj)
    (proj.manifests / f"{edited.digest}.json").write_text('{"a": 1}\n')
    index_before = (proj.manifests / "index" / "specs" / "a.jsonnet.jsonl").read_text()
    with pytest.raises(ExpcError) as info:
        write([fresh, edited], proj)
    assert info.value.render() == (f"manifests/{edited.digest}.json exists with different content; it was "
                                   "edited by hand. Remove it and build again.")
    assert files(proj) == [f"{edited.digest}.json", "index"]
    assert (proj.manifests / "index" / "specs" / "a.jsonnet.jsonl").read_text() == index_before
    assert not (proj.manifests / "index" / "specs" / "b.jsonnet.jsonl").exists()


def test_rebuilt_source_moves_in_the_index(proj):
    old = manifest({"lr": 1}, member="x")
    other = manifest({"lr": 9}, spec="specs/other.jsonnet")
    write([old, other], proj)
    new = manifest({"lr": 2}, member="x")
    write([new], proj)
    entries = read_index(proj)["manifests"]
    assert set(entries) == {new.digest, other.digest}  # the old digest has no source left
    assert entries[new.digest]["sources"][0]["member"] == "x"
    # the old file stays (`expc check --prune` removes orphans); only the index moved
    assert (proj.manifests / f"{old.digest}.json").exists()


def test_two_sources_share_a_digest(proj):
    a = manifest({"a": 1}, spec="specs/a.jsonnet")
    b = manifest({"a": 1}, spec="specs/b.jsonnet", sets=["seed=1"])
    write([a, b], proj)
    sources = read_index(proj)["manifests"][a.digest]["sources"]
    assert [(s["spec"], s.get("set")) for s in sources] == [("specs/a.jsonnet", None), ("specs/b.jsonnet", ["seed=1"])]


def test_index_format_is_checked(proj):
    proj.manifests.mkdir()
    (proj.manifests / "index.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(ExpcError) as info:
        read_index(proj)
    assert info.value.render() == "manifests/index.json: unknown index format 'other' (expected 'expc/index/v1')"
    (proj.manifests / "index.json").unlink()
    (proj.manifests / "index" / "specs").mkdir(parents=True)
    (proj.manifests / "index" / "specs" / "a.jsonnet.jsonl").write_text('{"schema": "expc/index/v9"}\n')
    with pytest.raises(ExpcError) as info:
        read_index(proj)
    assert info.value.render() == (
        "manifests/index/specs/a.jsonnet.jsonl: unknown index format 'expc/index/v9' (expected 'expc/index/v2')")


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "x.json"
    write_atomic(path, "one\n")
    write_atomic(path, "two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.json"
    write_atomic(path, "old\n")
    with pytest.raises(TypeError):
        write_atomic(path, None)  # a bug mid-write: the old content survives, no temp file is left
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def index_file(proj, spec):
    return proj.manifests / "index" / f"{spec}.jsonl"


def test_a_build_rewrites_only_its_specs_index_file(proj):
    a1, a2 = manifest({"lr": 1}, member="x"), manifest({"lr": 2}, member="y")
    b = manifest({"lr": 9}, spec="specs/b.jsonnet")
    write([a1, a2, b], proj)
    b_file = index_file(proj, "specs/b.jsonnet")
    os.utime(b_file, ns=(1, 1))
    before = index_file(proj, "specs/a.jsonnet").read_text().splitlines()
    moved = manifest({"lr": 3}, member="y")
    write([moved], proj)
    assert b_file.stat().st_mtime_ns == 1  # not read-and-rewritten: another spec's file
    after = index_file(proj, "specs/a.jsonnet").read_text().splitlines()
    # one line per source, sorted by source: the rebuilt member changed its own line only
    assert after[:2] == before[:2] and after[2] == f'{{"digest": "{moved.digest}", "member": "y"}}'
    assert before[2] == f'{{"digest": "{a2.digest}", "member": "y"}}'


def test_a_source_that_read_other_files_says_so(proj):
    usual = [manifest({"lr": i}, member=f"m{i}") for i in range(3)]
    odd = manifest({"lr": 7}, member="m7")
    odd.imports = ["specs/a.jsonnet", "lib/other.libsonnet"]
    write([*usual, odd], proj)
    lines = [json.loads(line) for line in index_file(proj, "specs/a.jsonnet").read_text().splitlines()]
    assert lines[0]["imports"] == usual[0].imports  # the common list, once
    assert [line.get("imports") for line in lines[1:]] == [None, None, None, odd.imports]
    assert read_index(proj)["manifests"][odd.digest]["sources"][0]["imports"] == odd.imports


def test_an_index_json_of_the_earlier_layout_is_read_then_converted(proj):
    a, b = manifest({"a": 1}), manifest({"a": 2}, spec="specs/b.jsonnet", sets=["seed=1"])
    proj.manifests.mkdir()
    legacy = {"schema": "expc/index/v1", "manifests": {
        a.digest: {"sources": [{"spec": a.spec, "imports": a.imports}]},
        b.digest: {"sources": [{"spec": b.spec, "imports": b.imports, "set": b.set}]}}}
    (proj.manifests / "index.json").write_text(json.dumps(legacy))
    assert read_index(proj) == {**legacy, "schema": "expc/index/v2"}  # readers take it as it is
    rebuilt = manifest({"a": 3})
    write([rebuilt], proj)  # the next write converts every spec's entries, then removes index.json
    assert not (proj.manifests / "index.json").exists()
    assert files(proj) == [f"{rebuilt.digest}.json", "index"]
    assert read_index(proj)["manifests"] == {
        rebuilt.digest: {"sources": [{"spec": a.spec, "imports": a.imports}]},
        b.digest: {"sources": [{"spec": b.spec, "imports": b.imports, "set": b.set}]}}
    assert index_file(proj, "specs/b.jsonnet").read_text().splitlines()[1] == (
        f'{{"digest": "{b.digest}", "set": ["seed=1"]}}')


def test_fields_a_source_carries_survive_a_rebuild_of_another_member(proj):
    a, b = manifest({"lr": 1}, member="x"), manifest({"lr": 2}, member="y")
    write([a, b], proj)
    path = index_file(proj, "specs/a.jsonnet")
    lines = path.read_text().splitlines()
    extra = json.loads(lines[1]) | {"trial": 4}
    path.write_text("\n".join([lines[0], json.dumps(extra, sort_keys=True), lines[2]]) + "\n")
    write([manifest({"lr": 3}, member="y")], proj)
    assert read_index(proj)["manifests"][a.digest]["sources"][0]["trial"] == 4
