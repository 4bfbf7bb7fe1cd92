"""Provenance: `expc explain` on a spec with three layers of mixins (tests/cases/provenance/), the
origin line in schema errors, and the field scanner on awkward Jsonnet."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from expc.cli import cli
from expc.compile.provenance import parse_path, scan

CASE = Path(__file__).parent / "cases" / "provenance"


def run(args):
    result = CliRunner().invoke(cli, args, standalone_mode=False)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def lib_lines_hidden(text: str) -> str:
    """The base lib's line numbers move as it is edited; the fixture's own lines must not."""
    return re.sub(r"lib/(experiment|optim|zero|models|hardware)\.libsonnet:\d+", r"lib/\1.libsonnet:N", text)


@pytest.fixture
def repo(project, monkeypatch):
    monkeypatch.chdir(project)
    shutil.copytree(CASE / "lib", project / "lib", dirs_exist_ok=True)
    shutil.copytree(CASE / "specs", project / "specs", dirs_exist_ok=True)
    return project


@pytest.mark.parametrize("path, expected", [
    ("train.max_steps", """\
train.max_steps = 300
  set at specs/layers.jsonnet:10 (train.max_steps:)
  overriding lib/experiment.libsonnet:N (train.max_steps:)
  overriding lib/layer_two.libsonnet:7 (train.max_steps:)
  overriding lib/layer_one.libsonnet:4 (train.max_steps:)
"""),
    ("train.eval_interval", """\
train.eval_interval = 20
  set at lib/layer_two.libsonnet:8 (train.eval_interval:)
  overriding lib/experiment.libsonnet:N (train.eval_interval:)
"""),
    ("train.log_interval", """\
train.log_interval = 7
  set at lib/layer_one.libsonnet:5 (train.log_interval:)
  overriding lib/experiment.libsonnet:N (train.log_interval:)
"""),
    ("deepspeed.optimizer.params.lr", """\
deepspeed.optimizer.params.lr = 0.0005
  set at lib/optim.libsonnet:N (adamw_with.deepspeed.optimizer.params.lr:)
  from lib/layer_two.libsonnet:5 (lr::)
  overriding lib/experiment.libsonnet:N (lr::)
"""),
    ("logging.wandb.tags[0]", """\
logging.wandb.tags[0] = "layer_one"
  set at lib/layer_one.libsonnet:7 (logging.wandb.tags:)
  overriding lib/experiment.libsonnet:N (logging.wandb.tags:)
"""),
    ("deepspeed.zero_optimization.stage", """\
deepspeed.zero_optimization.stage = 1
  set at lib/zero.libsonnet:N (stage.deepspeed.zero_optimization.stage:)
  overriding lib/experiment.libsonnet:N (deepspeed.zero_optimization.stage:)
"""),
])
def test_explain_three_layers(repo, path, expected):
    assert lib_lines_hidden(run(["explain", "specs/layers.jsonnet", path]).output) == expected


def test_explain_a_committed_manifest_by_digest_prefix(repo):
    digest = json.loads(run(["build", "specs/layers.jsonnet", "--json"]).output)[0]["digest"]
    out = run(["explain", digest[:8], "train.max_steps", "--json"]).output
    assert json.loads(out) == [{
        "path": "train.max_steps", "value": 300, "set": None,
        "set_by": [{"file": "specs/layers.jsonnet", "line": 10, "field": "train.max_steps"}],
        "reads": [], "reads_set": [],
        "overridden": json.loads(out)[0]["overridden"],
        "pinned": None,
    }]
    assert [o["file"] for o in json.loads(out)[0]["overridden"]] == [
        "lib/experiment.libsonnet", "lib/layer_two.libsonnet", "lib/layer_one.libsonnet"]


def test_explain_after_a_set_names_the_set_a_derived_value_follows(repo):
    """Late-bound: the schedule's length follows `--set train.max_steps`, and explain says so
    rather than naming the spec's own max_steps, which no longer counts. The schedules the spec
    never picked are not listed as overridden."""
    out = run(["explain", "specs/layers.jsonnet", "deepspeed.scheduler.params.total_num_steps",
               "--set", "train.max_steps=400"]).output
    assert lib_lines_hidden(out) == """\
deepspeed.scheduler.params.total_num_steps = 400
  set at lib/optim.libsonnet:N (warmup_cosine.deepspeed.scheduler.params.total_num_steps:)
  from --set train.max_steps=400
"""


def test_every_leaf_has_an_origin(repo):
    out = run(["explain", "specs/layers.jsonnet", "--json"]).output
    rows = json.loads(out)
    assert len(rows) > 50
    assert [r["path"] for r in rows if not (r["set_by"] or r["pinned"])] == []
    # the one field no spec line sets: the build pinned the corpus it reads
    assert [r["pinned"] for r in rows if r["pinned"]] == ["the standard library's files"]


def test_schema_errors_name_where_the_value_was_set(repo, capsys):
    from expc.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["build", "specs/layers_bad.jsonnet"])
    assert exit_info.value.code == 1
    assert lib_lines_hidden(capsys.readouterr().err) == (
        "error: specs/layers_bad.jsonnet $.launch.threads_per_process: 0 is less than the minimum of 1\n"
        "  (set at specs/layers_bad.jsonnet:5, overriding lib/experiment.libsonnet:N)\n")
    with pytest.raises(SystemExit):
        main(["build", "specs/layers_bad.jsonnet", "--set", "launch.threads_per_process=-2"])
    assert capsys.readouterr().err == (
        "error: specs/layers_bad.jsonnet $.launch.threads_per_process: -2 is less than the minimum of 1\n"
        "  (set at --set launch.threads_per_process=-2)\n")


def test_explain_errors(repo, capsys):
    from expc.cli import main

    for args, message in [
        (["explain", "specs/layers.jsonnet", "train.nope"], "error: train.nope: no such field in the manifest\n"),
        (["explain", "specs/layers.jsonnet", "train..x"], "error: 'train..x' is not a JSON path "
                                                           "(expected e.g. deepspeed.zero_optimization.stage)\n"),
        (["explain", "specs/layers.jsonnet", "seed", "--member", "a"],
         "error: specs/layers.jsonnet has no member 'a' (it is not a sweep)\n"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert (exit_info.value.code, capsys.readouterr().err) == (1, message)


def test_parse_path():
    assert parse_path("$.logging.wandb.tags[1]") == ("logging", "wandb", "tags", 1)
    assert parse_path("model.n_layer") == ("model", "n_layer")


def test_scanner_on_awkward_jsonnet():
    text = """\
// a comment with { braces: 1 }
local helper(x) = { from_local: x };  # another } comment
local s = |||
  text block with a: b and }
|||;
{
  /* block { comment */ plain: 1,
  'quoted key': @'verbatim '' } string',
  "dq": "a \\" } b",
  nested+: { inner:: [ { in_array: 2 } ], method(a, b):: { body: a } },
  [std.toString(1)]: 'computed, skipped',
  assert self.plain > 0 : 'msg: with colon',
  local hidden = { not_a_field_path: 3 },
  after: { x: 1 for_ignored: 0 },
}
"""
    found = {(".".join(d.path), d.line, d.hidden, d.method) for d in scan(text, "f.jsonnet")}
    assert found == {
        ("helper.from_local", 2, False, False),
        ("plain", 7, False, False),
        ("quoted key", 8, False, False),
        ("dq", 9, False, False),
        ("nested.inner.in_array", 10, False, False),
        ("nested.inner", 10, True, False),
        ("nested.method.body", 10, False, False),
        ("nested.method", 10, True, True),
        ("nested", 10, False, False),
        ("hidden.not_a_field_path", 13, False, False),
        ("after.x", 14, False, False),
        ("after", 14, False, False),
    }
