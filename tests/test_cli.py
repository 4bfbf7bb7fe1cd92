"""The CLI: exact output and exit status of build, show, ls and schema; every command has help
with an example; user errors are one line on stderr with status 1, no traceback."""
import json
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from expc.canonical import digest, load_manifest
from expc.cli import cli, main

ROOT = Path(__file__).resolve().parent.parent
SPEC = """local expc = import 'expc.libsonnet';

function(lr=3e-4)
  expc.experiment + expc.zero.stage1 + expc.presets.quick_test + {
    hardware: expc.hardware.cpu_laptop,
    model: expc.models.gpt_debug,
    data: expc.data.synthetic(),
    global_batch_size:: 4,
    micro_batch_size:: 2,
    lr:: lr,
  }
"""
SWEEP = """local expc = import 'expc.libsonnet';
local one = import 'one.jsonnet';

{ a: one(1e-3), b: one(2e-3) }
"""


@pytest.fixture
def proj(project, monkeypatch):
    (project / "specs" / "one.jsonnet").write_text(SPEC)
    (project / "specs" / "two.jsonnet").write_text(SWEEP)
    monkeypatch.chdir(project)
    return project


def run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_build_prints_one_path_per_manifest(proj, capsys):
    code, out, err = run(["build", "specs/one.jsonnet", "specs/two.jsonnet"], capsys)
    assert (code, err) == (0, "")
    paths = out.splitlines()
    assert len(paths) == 3 and all(p.startswith("manifests/") and p.endswith(".json") for p in paths)
    for path in paths:
        data, name = load_manifest(proj / path)
        assert path == f"manifests/{digest(data)}.json"
    # the same build again prints the same lines and writes nothing new
    assert run(["build", "specs/one.jsonnet", "specs/two.jsonnet"], capsys) == (0, out, "")


def test_build_json(proj, capsys):
    code, out, _ = run(["build", "specs/two.jsonnet", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0
    assert [(r["spec"], r["member"]) for r in rows] == [("specs/two.jsonnet", "a"), ("specs/two.jsonnet", "b")]
    assert all(r["path"] == f"manifests/{r['digest']}.json" for r in rows)
    assert list(rows[0]) == ["path", "digest", "spec", "member"]


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
    code, out, err = run(["ls", "hardware"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["name", "nodes", "procs_per_node", "device", "memory_gib", "bf16", "interconnect"]
    assert "cpu_laptop    1      2               cpu        8           False  loopback" in lines


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
