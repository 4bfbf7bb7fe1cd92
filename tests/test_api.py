"""The public Python API (docs/api.md): `expc.build`, `expc.load`, `expc.run` on a scratch project,
the one `expc.ExpcError`, and `import expc` staying light. No training here: `run` is a dry run
(tests/trainer/test_api_docs.py trains through it)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import expc
from expc.compile.write import read_index
from expc.project import Project


def test_import_expc_loads_only_the_error_type():
    code = ("import sys, expc\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('expc', 'trainer', 'torch', '_gojsonnet'))\n"
            "print(loaded)\n"
            "expc.build\n"
            "print(sorted(m for m in ('torch', 'deepspeed', 'wandb', 'transformers') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "['expc', 'expc.errors']\n[]\n"
    assert set(expc.__all__) <= set(dir(expc))
    with pytest.raises(AttributeError, match="module 'expc' has no attribute 'bild'"):
        _ = expc.bild


def test_build_writes_as_expc_build_does(proj):
    manifests = expc.build("specs/two.jsonnet", tla=None, set=["train.max_steps=12"])
    assert [(m.spec, m.member, m.set) for m in manifests] == [
        ("specs/two.jsonnet", "a", ["train.max_steps=12"]), ("specs/two.jsonnet", "b", ["train.max_steps=12"])]
    for m in manifests:
        assert m.path == proj / "manifests" / f"{m.digest}.json"
        assert json.loads(m.path.read_text()) == m.data and m.data["train"]["max_steps"] == 12
    index = read_index(Project(proj))["manifests"]
    assert sorted(index) == sorted(m.digest for m in manifests)


def test_build_in_memory_writes_nothing(proj):
    (m,) = expc.build(proj / "specs" / "one.jsonnet", tla={"lr": 1e-3}, set={"seed": 9, "train.max_steps": 12},
                      write=False)
    assert m.path is None and m.tla == {"lr": 1e-3} and m.set == ["seed=9", "train.max_steps=12"]
    assert m.data["seed"] == 9 and m.data["deepspeed"]["optimizer"]["params"]["lr"] == 1e-3
    assert not (proj / "manifests").exists()
    # the command-line spelling of --tla, and the same digest
    (same,) = expc.build("specs/one.jsonnet", tla=["lr=1e-3"], set=["seed=9", "train.max_steps=12"], write=False)
    assert same.digest == m.digest


def test_load_verifies_and_finds_the_source(proj, tmp_path_factory):
    (built,) = expc.build("specs/one.jsonnet", tla={"lr": 1e-3})
    loaded = expc.load(built.digest[:6])
    assert (loaded.digest, loaded.data, loaded.path, loaded.spec, loaded.tla) == (
        built.digest, built.data, built.path, "specs/one.jsonnet", {"lr": 1e-3})
    assert expc.load(built).digest == built.digest
    copy = tmp_path_factory.mktemp("elsewhere") / built.path.name
    copy.write_bytes(built.path.read_bytes())
    assert expc.load(copy).spec is None  # a manifest whose project's index does not know it
    built.path.write_text(built.path.read_text().replace('"seed": 1', '"seed": 2'))
    with pytest.raises(expc.ExpcError, match="does not match"):
        expc.load(built.digest[:6])


def test_errors_are_the_one_error_type_with_locations(proj):
    with pytest.raises(expc.ExpcError) as info:
        expc.build(["specs/one.jsonnet", "specs/none.jsonnet"], write=False)
    assert str(info.value) == "no such spec: specs/none.jsonnet"
    with pytest.raises(expc.ExpcError) as info:
        expc.build("specs/one.jsonnet", set=["train.max_steps=0"], write=False)
    # late-bound: the lib's own rule (warm-up shorter than the run) sees it, and names the --set
    assert [p.location for p in info.value.problems] == ["--set train.max_steps=0"]
    with pytest.raises(expc.ExpcError, match="give a list of path=value strings"):
        expc.build("specs/one.jsonnet", set="seed=3")
    assert expc.ExpcError is __import__("expc.errors").errors.ExpcError


def test_run_dry_run_returns_the_runs_it_would_make(proj, capsys, tmp_path_factory):
    runs = tmp_path_factory.mktemp("scratch") / "runs"
    planned = expc.run("specs/two.jsonnet", set=["seed=4"], dry_run=True, runs_dir=runs)
    out = capsys.readouterr().out
    assert [r.dir for r in planned] == [runs / r.digest for r in planned] and len(planned) == 2
    assert [r.status for r in planned] == [None, None] and [r.metrics() for r in planned] == [[], []]
    assert [line.split("--run-dir ")[1] for line in out.splitlines()] == [str(r.dir) for r in planned]
    assert {expc.load(r.digest).set[0] for r in planned} == {"seed=4"}
    assert not runs.exists()


def test_run_refuses_what_it_cannot_run(proj):
    (in_memory,) = expc.build("specs/one.jsonnet", write=False)
    with pytest.raises(expc.ExpcError, match="was built with write=False"):
        expc.run(in_memory, dry_run=True)
    (written,) = expc.build("specs/one.jsonnet")
    with pytest.raises(expc.ExpcError, match="^--set shapes a spec, but .* is a manifest"):
        expc.run(written, set=["seed=3"], dry_run=True)
