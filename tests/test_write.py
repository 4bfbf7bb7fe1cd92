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
    assert files(proj) == [f"{m.digest}.json", "index.json"]
    assert (proj.manifests / f"{m.digest}.json").read_text() == pretty(m.data) == '{\n  "a": 0.5,\n  "b": 1\n}\n'
    assert read_index(proj) == {"schema": "expc/index/v1", "manifests": {m.digest: {"sources": [
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
    index_before = (proj.manifests / "index.json").read_text()
    with pytest.raises(ExpcError) as info:
        write([fresh, edited], proj)
    assert info.value.render() == (f"manifests/{edited.digest}.json exists with different content; it was "
                                   "edited by hand. Remove it and build again.")
    assert files(proj) == [f"{edited.digest}.json", "index.json"]
    assert (proj.manifests / "index.json").read_text() == index_before


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
