"""The CLI: exact output and exit status of build, show, ls and schema; every command has help
with an example; user errors are one line on stderr with status 1, no traceback."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from expc.compile.canonical import digest, load_manifest
from expc.cli import cli

from .conftest import run_cli as run

ROOT = Path(__file__).resolve().parent.parent


def test_build_prints_one_path_per_manifest(proj, capsys):
    code, out, err = run(["build", "specs/one.jsonnet", "specs/two.jsonnet"], capsys)
    assert code == 0
    # the sweep's preview is on stderr, so stdout stays one path per line
    assert err == ("specs/two.jsonnet: 2 members\n  members named by hand: a, b\n  completed runs in runs/: 0 of 2\n"
                   f"  to run: 2 members, {err.split('to run: 2 members, ')[1].split(' ')[0]} device-hours "
                   "estimated (MFU: default; `expc plan` has the details)\n")
    paths = out.splitlines()
    assert len(paths) == 3 and all(p.startswith("manifests/") and p.endswith(".json") for p in paths)
    for path in paths:
        data, name = load_manifest(proj / path)
        assert path == f"manifests/{digest(data)}.json"
    # the same build again prints the same lines and writes nothing new
    assert run(["build", "specs/one.jsonnet", "specs/two.jsonnet"], capsys) == (0, out, err)


def test_build_json(proj, capsys):
    code, out, _ = run(["build", "specs/two.jsonnet", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0
    assert [(r["spec"], r["member"]) for r in rows] == [("specs/two.jsonnet", "a"), ("specs/two.jsonnet", "b")]
    assert all(r["path"] == f"manifests/{r['digest']}.json" for r in rows)
    assert list(rows[0]) == ["path", "digest", "spec", "member", "set"]


def test_build_sweep_from_the_command_line_then_check(proj, capsys):
    code, out, err = run(["build", "specs/one.jsonnet", "--sweep", "lr=1e-3,2e-3", "--sweep", "seed=1,2", "--json"],
                         capsys)
    rows = json.loads(out)
    assert code == 0 and err.startswith("specs/one.jsonnet: 4 members\n  axis  values\n  lr    1e-3, 2e-3\n  seed  1, 2\n")
    assert [r["member"] for r in rows] == ["lr=1e-3,seed=1", "lr=1e-3,seed=2", "lr=2e-3,seed=1", "lr=2e-3,seed=2"]
    assert rows[0]["set"] == ["lr=1e-3", "seed=1"]
    # The index records each member as the spec and its --sets: `expc check` rebuilds all four.
    (proj / "specs" / "two.jsonnet").unlink()
    code, out, err = run(["check"], capsys)
    assert (code, out, err) == (0, "ok: 1 spec(s), 4 manifest(s) up to date\n", "")


def test_tla_and_set_change_the_digest(proj, capsys):
    base = run(["build", "specs/one.jsonnet"], capsys)[1]
    tla = run(["build", "specs/one.jsonnet", "--tla", "lr=1e-3"], capsys)[1]
    changed = run(["build", "specs/one.jsonnet", "--set", "train.max_steps=60"], capsys)[1]
    assert len({base, tla, changed}) == 3
    assert load_manifest(proj / changed.strip())[0]["train"]["max_steps"] == 60


def test_show_prints_without_writing(proj, capsys):
    code, out, err = run(["show", "specs/one.jsonnet"], capsys)
    assert (code, err) == (0, "")
    assert not (proj / "manifests").exists()
    built = run(["build", "specs/one.jsonnet"], capsys)[1].strip()
    assert (proj / built).read_text() == out
    assert run(["show", Path(built).stem[:8]], capsys) == (0, out, "")
    code, sweep, _ = run(["show", "specs/two.jsonnet"], capsys)
    assert list(json.loads(sweep)) == ["a", "b"]


def test_ls_hardware_exact(proj, capsys):
    assert run(["ls", "hardware"], capsys) == (0, """\
name          nodes  procs_per_node  device        memory_gib  bf16   fp16   peak_tflops  interconnect
a100_40gb_x1  1      1               A100-40GB     40          True   True   312          pcie
a100_80gb_x8  1      8               A100-80GB     80          True   True   312          nvlink
cpu_laptop    1      2               cpu           8           False  False  0.1          loopback
h100_80gb_x1  1      1               H100-80GB     80          True   True   756          pcie
h100_80gb_x8  1      8               H100-80GB     80          True   True   989          nvlink
rtx4090_24gb  1      1               RTX4090-24GB  24          True   True   165          pcie
""", "")


def test_ls_models_smallest_first_exact(proj, capsys):
    # three significant digits: the 2.7B config has 2,648,148,480 parameters (tied embeddings)
    assert run(["ls", "models"], capsys) == (0, """\
name       params  n_layer  n_head  n_embd  block_size  vocab_size
gpt_debug  34K     2        2       32      32          256
gpt_cpu    837K    4        4       128     128         256
gpt_124m   124M    12       12      768     1024        50304
gpt_350m   355M    24       16      1024    1024        50304
gpt_760m   758M    24       16      1536    1024        50304
gpt_1_3b   1.31B   24       32      2048    1024        50304
gpt_2_7b   2.65B   32       32      2560    1024        50304
gpt_6_7b   6.65B   32       32      4096    1024        50304
""", "")


def test_ls_manifests_after_build(proj, capsys):
    run(["build", "specs/two.jsonnet"], capsys)
    code, out, _ = run(["ls", "manifests", "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 2


def test_schema_reference_and_json_schema(proj, capsys):
    code, out, _ = run(["schema"], capsys)
    assert code == 0
    assert "- `model.n_head`: integer (>= 1, <= 1024). Attention heads per block; must divide n_embd." in out.splitlines()
    code, out, _ = run(["schema", "--json-schema"], capsys)
    assert json.loads(out)["$id"] == "expc/manifest/v1"


def test_manifest_path_that_names_no_file_is_a_digest_prefix(proj, capsys):
    built = run(["build", "specs/one.jsonnet"], capsys)[1].strip()
    shown = run(["show", built], capsys)
    assert shown[0] == 0
    prefix = Path(built).stem[:8]
    assert run(["show", f"manifests/{prefix}.json"], capsys) == shown
    assert run(["show", f"manifests/{prefix}"], capsys) == shown
    assert run(["show", str(proj / "manifests" / f"{prefix}.json")], capsys) == shown
    (proj / "manifests" / "abcd1111.json").write_text("{}")
    (proj / "manifests" / "abcd2222.json").write_text("{}")
    assert run(["show", "manifests/abcd.json"], capsys) == (
        1, "", "error: digest prefix abcd is ambiguous: abcd1111, abcd2222\n")
    assert run(["show", "manifests/dead.json"], capsys) == (
        1, "", "error: no manifest in manifests/ starts with dead\n")
    # only under manifests/, and only a hex prefix of 4 or more
    for ref in (f"specs/{prefix}.json", "manifests/abc.json", "manifests/one.json"):
        assert run(["show", ref], capsys) == (1, "", f"error: no such manifest: {ref}\n")


def test_user_error_is_one_message_exit_1(proj, capsys):
    code, out, err = run(["build", "specs/none.jsonnet"], capsys)
    assert (code, out, err) == (1, "", "error: no such spec: specs/none.jsonnet\n")


def test_usage_error_exit_2(proj, capsys):
    code, out, err = run(["build"], capsys)
    assert code == 2 and "Missing argument 'SPECS...'" in err


def test_nothing_written_when_one_spec_of_many_fails(proj, capsys):
    (proj / "specs" / "bad.jsonnet").write_text("{}")
    (proj / "specs" / "worse.jsonnet").write_text("'text'")
    code, _, err = run(["build", "specs/bad.jsonnet", "specs/one.jsonnet", "specs/worse.jsonnet"], capsys)
    assert (code, err) == (1, "error: 2 problems:\n"
                              "- specs/bad.jsonnet: the spec returned an empty sweep: a sweep (an object of "
                              "member name -> experiment) needs at least one member\n"
                              "- specs/worse.jsonnet: the spec returned a string; expected an experiment (an "
                              "object with a 'schema' field) or a sweep (an object of member name -> experiment)\n")
    assert not (proj / "manifests").exists()


def all_commands(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [p for p, _ in all_commands(cli)], ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output, f"`expc {' '.join(path)} --help` shows no example"
    assert f"expc {path[0]}" in result.output.split("Example", 1)[1]


def help_examples():
    """Every `expc ...` line under "Example(s):" in every command's help, comments dropped."""
    for path, _ in all_commands(cli):
        text = CliRunner().invoke(cli, [*path, "--help"]).output.split("Example", 1)[1]
        for line in text.splitlines()[1:]:
            line = line.split("#", 1)[0].strip()
            if line.startswith("expc "):
                yield line


# An example that cannot work as written, and why; strict, so a fixed example fails here.
@pytest.mark.parametrize("line", list(help_examples()))
def test_help_examples_run(line, tmp_path):
    if line.startswith("expc run ") and "--dry-run" not in line:
        pytest.skip("trains, or needs other machines")
    if line.startswith("expc search ") and "--propose" not in line:
        pytest.skip("trains (tests/trainer/test_search.py runs a search)")
    if line.startswith("expc export "):
        pytest.skip("needs a completed fine-tune (tests/trainer/test_finetune.py runs it)")
    if "--git" in line:
        pytest.skip("needs a git repository with that revision")
    # a copy of the project: examples build and prune
    for folder in ("lib", "specs", "manifests", "assets"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "docs").mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr
    if line.startswith("expc diff "):  # 0: equal, 1: they differ (and says how)
        assert done.returncode in (0, 1) and bool(done.stdout) == (done.returncode == 1), done.stderr
    else:
        assert done.returncode == 0, done.stderr
    # a dry run of a cluster's manifest may warn that its data is not on this machine, a build of a
    # sweep previews it (a first line naming the spec, then indented lines); nothing else
    assert [line for line in done.stderr.splitlines() if not line.startswith("warning: ")
            and not (line.startswith("expc build") or re.match(r"(specs/\S+: \d+ members?$|  |trial \d+: )", line))] == []


def test_ls_presets_lists_every_table_the_project_own_ones_too(proj, capsys):
    lib = proj / "lib" / "expc.libsonnet"
    lib.write_text(lib.read_text().replace("  names:: import 'names.libsonnet',",
                                           "  names:: import 'names.libsonnet',\n  sizes:: import 'sizes.libsonnet',"))
    (proj / "lib" / "sizes.libsonnet").write_text("{\n  wide:: { n_embd: 4096 },  // our wide variant\n}\n")
    code, out, err = run(["ls", "presets", "--json"], capsys)
    rows = json.loads(out)
    assert (code, err) == (0, "")
    assert {"table": "sizes", "name": "wide", "summary": "our wide variant"} in rows
    assert {"table": "zero", "name": "stage(n)", "summary": ""} in rows
    assert {r["table"] for r in rows} >= {"hardware", "models", "adapters", "templates", "optim", "zero", "presets"}
    assert not {"experiment", "batch", "sweep", "names", "knobs"} & {r["table"] for r in rows}


def test_ls_optimizers_schedules_zero_knobs(proj, capsys):
    def names(what):
        code, out, err = run(["ls", what, "--json"], capsys)
        assert (code, err) == (0, "")
        return [r["name"] for r in json.loads(out)]
    assert names("optimizers") == ["adamw", "adamw_with(betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1)"]
    assert names("schedules") == ["warmup_constant", "warmup_cosine(min_ratio=0.1)", "warmup_linear_decay"]
    assert "stage3" in names("zero") and "offload_optimizer" in names("zero")
    assert names("knobs") == ["global_batch_size", "lr", "micro_batch_size", "precision", "warmup_steps"]
    code, out, _ = run(["ls", "knobs"], capsys)
    assert out.splitlines()[0].split() == ["name", "schema", "aliases", "summary"]
    assert "learning_rate" in out
