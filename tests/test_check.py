"""`expc check` on a fixture repository, one test per kind of disagreement, on exact output."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from expc.cli import cli
from expc.compile.write import read_index
from expc.project import Project

CASES = Path(__file__).parent / "cases" / "diff"


def run(args):
    result = CliRunner().invoke(cli, args, standalone_mode=False)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def repo(project, monkeypatch):
    """A built fixture repository: an experiment and a two-member sweep, all committed."""
    monkeypatch.chdir(project)
    shutil.copy(CASES / "node_count" / "old.jsonnet", project / "specs" / "exp.jsonnet")
    shutil.copy(CASES / "sweep_member_added" / "old.jsonnet", project / "specs" / "sweep.jsonnet")
    built = run(["build", "specs/exp.jsonnet", "specs/sweep.jsonnet", "--json"])
    digests = {(r["spec"], r["member"]): r["digest"] for r in json.loads(built.stdout)}
    return Repo(project, digests)


class Repo(type(Path())):
    """The fixture repository's root, with the digests its build printed."""

    def __new__(cls, root, digests):
        self = super().__new__(cls, root)
        self.digests = digests
        return self


def test_agreeing_repository_passes(repo):
    result = run(["check"])
    assert (result.return_value, result.output) == (0, "ok: 2 spec(s), 3 manifest(s) up to date\n")


def test_stale_manifest(repo):
    old = repo.digests[("specs/exp.jsonnet", None)]
    shutil.copy(CASES / "node_count" / "new.jsonnet", repo / "specs" / "exp.jsonnet")
    result = run(["check"])
    assert result.return_value == 1
    assert result.output == (
        f"stale: specs/exp.jsonnet: specs/exp.jsonnet now compiles to fffa6f517f6f, but the committed "
        f"manifest is {old[:12]}\n"
        f"  fix: `expc build specs/exp.jsonnet`, then `expc check --prune` to remove {old[:12]}\n"
        "1 problem(s); 2 spec(s) compiled\n")
    run(["build", "specs/exp.jsonnet"])
    after_build = run(["check"])
    assert after_build.output.startswith(f"orphaned: manifests/{old}.json: no spec produces this manifest\n")
    assert run(["check", "--prune"]).output == (f"removed manifests/{old}.json\n"
                                                "ok: 2 spec(s), 3 manifest(s) up to date\n")
    assert not (repo / "manifests" / f"{old}.json").exists()


def test_missing_manifest(repo):
    shutil.copy(CASES / "zero_stage" / "new.jsonnet", repo / "specs" / "zero3.jsonnet")
    result = run(["check"])
    assert result.return_value == 1
    assert result.output == (
        "missing: specs/zero3.jsonnet: specs/zero3.jsonnet compiles to eeeebac12373, which is not committed\n"
        "  fix: `expc build specs/zero3.jsonnet`\n"
        "1 problem(s); 3 spec(s) compiled\n")


def test_orphaned_manifest_and_index_entry_are_pruned(repo):
    (repo / "specs" / "exp.jsonnet").unlink()
    digest = repo.digests[("specs/exp.jsonnet", None)]
    result = run(["check"])
    assert result.return_value == 1
    assert result.output == (
        f"orphaned: manifests/{digest}.json: no spec produces this manifest\n"
        "  fix: `expc check --prune` removes it (or restore the spec that built it)\n"
        f"index: manifests/index/specs/exp.jsonnet.jsonl: records specs/exp.jsonnet -> {digest[:12]}, but that spec no "
        "longer exists\n"
        "  fix: `expc check --prune` drops the entry\n"
        "2 problem(s); 1 spec(s) compiled\n")
    pruned = run(["check", "--prune"])
    assert (pruned.return_value, pruned.output) == (
        0, f"removed manifests/{digest}.json\nok: 1 spec(s), 2 manifest(s) up to date\n")
    index = read_index(Project(repo))
    assert digest not in index["manifests"] and len(index["manifests"]) == 2
    assert not (repo / "manifests" / "index" / "specs" / "exp.jsonnet.jsonl").exists()  # no source left


def test_manifest_that_does_not_rehash(repo):
    digest = repo.digests[("specs/sweep.jsonnet", "lr=2e-3")]
    path = repo / "manifests" / f"{digest}.json"
    path.write_text(path.read_text().replace('"max_steps": 50', '"max_steps": 60'))
    result = run(["check"])
    assert result.return_value == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"rehash: manifests/{digest}.json: content hashes to ")
    assert lines[0].endswith(", not to its name")
    assert lines[1] == (f"  fix: it was edited by hand: restore it with `git checkout -- manifests/{digest}.json`,"
                        " or remove it and run `expc build specs/sweep.jsonnet`")
    assert lines[2] == "1 problem(s); 2 spec(s) compiled"


def test_reformatted_manifest_is_caught(repo):
    digest = repo.digests[("specs/exp.jsonnet", None)]
    path = repo / "manifests" / f"{digest}.json"
    path.write_text(json.dumps(json.loads(path.read_text())))
    assert run(["check"]).output.splitlines()[0] == (
        f"rehash: manifests/{digest}.json: content hashes to its name but is not in the pretty form expc writes")


def test_index_that_disagrees(repo):
    digest = repo.digests[("specs/exp.jsonnet", None)]
    index_path = repo / "manifests" / "index" / "specs" / "exp.jsonnet.jsonl"
    index_path.write_text(index_path.read_text().splitlines()[0] + "\n")  # the header, no source
    result = run(["check"])
    assert result.return_value == 1
    assert result.output == (
        f"index: manifests/index/specs/exp.jsonnet.jsonl: specs/exp.jsonnet compiles to {digest[:12]}, but the "
        "index has no entry for it\n"
        "  fix: `expc build specs/exp.jsonnet`\n"
        "1 problem(s); 2 spec(s) compiled\n")
    run(["build", "specs/exp.jsonnet"])
    assert run(["check"]).return_value == 0


def test_spec_that_does_not_compile(repo):
    (repo / "specs" / "broken.jsonnet").write_text("{ a: }\n")
    result = run(["check"])
    assert result.return_value == 1
    assert result.output.splitlines()[0].startswith("compile: specs/broken.jsonnet: specs/broken.jsonnet:1:")
    assert "  fix: fix the spec until `expc build specs/broken.jsonnet` succeeds" in result.output


def test_json_output(repo):
    (repo / "specs" / "exp.jsonnet").unlink()
    data = json.loads(run(["check", "--json"]).output)
    assert data["ok"] is False
    assert sorted(f["kind"] for f in data["findings"]) == ["index", "orphaned"]
