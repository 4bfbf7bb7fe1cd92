"""`expc affected` on a fixture lib (tests/cases/affected/): direct and transitive imports count,
an import that evaluation never forces does not."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from expc.cli import cli

CASE = Path(__file__).parent / "cases" / "affected"


def run(args):
    result = CliRunner().invoke(cli, args, standalone_mode=False, catch_exceptions=False)
    return result


@pytest.fixture
def repo(project, monkeypatch):
    monkeypatch.chdir(project)
    shutil.copytree(CASE / "lib", project / "lib", dirs_exist_ok=True)
    shutil.copytree(CASE / "specs", project / "specs", dirs_exist_ok=True)
    built = run(["build", "specs/uses_widths.jsonnet", "specs/uses_laptop.jsonnet", "--json"])
    return {row["spec"]: row["digest"] for row in json.loads(built.output)}


def test_transitive_import_counts(repo):
    result = run(["affected", "lib/widths.libsonnet"])
    assert result.output == f"{repo['specs/uses_widths.jsonnet'][:12]}  specs/uses_widths.jsonnet\n"


def test_shared_lib_touches_both_and_names_the_cause(repo):
    rows = json.loads(run(["affected", "lib/hardware.libsonnet", "lib/laptop.libsonnet", "--json"]).output)
    assert [(r["spec"], r["because"]) for r in rows] == [
        ("specs/uses_laptop.jsonnet", ["lib/hardware.libsonnet", "lib/laptop.libsonnet"]),
        ("specs/uses_widths.jsonnet", ["lib/hardware.libsonnet"]),
    ]
    assert run(["affected", "--specs", "lib/experiment.libsonnet"]).output == (
        "specs/uses_laptop.jsonnet\nspecs/uses_widths.jsonnet\n")


def test_an_import_never_forced_touches_nothing(repo):
    assert run(["affected", "lib/never_forced.libsonnet"]).output == ""


def test_a_spec_affects_its_own_manifests(repo):
    assert run(["affected", "specs/uses_laptop.jsonnet"]).output == (
        f"{repo['specs/uses_laptop.jsonnet'][:12]}  specs/uses_laptop.jsonnet\n")


def test_a_deleted_spec_is_not_offered_to_build(repo):
    (Path("specs") / "uses_widths.jsonnet").unlink()
    result = run(["affected", "--specs", "lib/hardware.libsonnet"])
    assert result.stdout == "specs/uses_laptop.jsonnet\n"  # so `expc build $(...)` builds what exists
    assert result.stderr == ("note: specs/uses_widths.jsonnet was deleted; `expc check --prune` removes its "
                             "manifests\n")
    assert run(["affected", "lib/hardware.libsonnet"]).stdout == (
        f"{repo['specs/uses_laptop.jsonnet'][:12]}  specs/uses_laptop.jsonnet\n"
        f"{repo['specs/uses_widths.jsonnet'][:12]}  specs/uses_widths.jsonnet  (spec deleted)\n")
    rows = json.loads(run(["affected", "lib/hardware.libsonnet", "--json"]).stdout)
    assert [(r["spec"], r["deleted"]) for r in rows] == [("specs/uses_laptop.jsonnet", False),
                                                         ("specs/uses_widths.jsonnet", True)]
    # and the build it feeds succeeds
    assert run(["build", *result.stdout.split()]).exit_code == 0
