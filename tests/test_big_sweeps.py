"""Big sweeps. Compiled in memory (`expc show`, `check`, `plan`, or to report an error), one is
evaluated a chunk of members at a time (pipeline.CHUNK_MEMBERS): the same manifests, names and
imports as in one evaluation, and the same error messages; here chunks of 5 members stand in for
chunks of thousands. Built, one streams (pipeline.STREAM_ABOVE): below. bench/big_sweeps.py
measures the real sizes."""
from __future__ import annotations

import pytest

from expc.compile import compile_spec, pipeline
from expc.errors import ExpcError
from expc.project import Project

SWEEP = """local expc = import 'expc.libsonnet';
local one = import 'one.jsonnet';
expc.sweep.grid(one(), %s)
"""


def compiled(proj, spec: str, chunk: int, monkeypatch):
    monkeypatch.setattr(pipeline, "CHUNK_MEMBERS", chunk)
    try:
        return [(m.name, m.digest, m.imports) for m in compile_spec(proj / spec, Project(proj))]
    except ExpcError as err:
        return err.render()


def test_chunks_give_the_manifests_of_one_evaluation(proj, monkeypatch):
    (proj / "specs" / "grid.jsonnet").write_text(SWEEP % "{ seed: std.range(1, 12) }")
    whole = compiled(proj, "specs/grid.jsonnet", 1000, monkeypatch)
    assert len(whole) == 12
    assert compiled(proj, "specs/grid.jsonnet", 5, monkeypatch) == whole


@pytest.mark.parametrize("axes", [
    "{ seed: std.range(1, 6), micro_batch_size: [1, 3] }",  # a lib assert in half the members
    "{ seed: std.range(1, 6), lr: [1e-3, true] }",  # a knob of the wrong type
    "{ seed: std.range(1, 6), 'train.max_steps': [10, -1] }",  # a schema error
], ids=["lib-assert", "knob", "schema"])
def test_chunks_report_errors_as_one_evaluation_does(proj, monkeypatch, axes):
    (proj / "specs" / "grid.jsonnet").write_text(SWEEP % axes)
    whole = compiled(proj, "specs/grid.jsonnet", 1000, monkeypatch)
    assert isinstance(whole, str) and "of 12 sweep members" in whole
    assert compiled(proj, "specs/grid.jsonnet", 5, monkeypatch) == whole


# ---- a built sweep streams: compiled member by member as go-jsonnet evaluates it ----------------
# `expc build` (a process without go's runtime, which may fork) of a sweep over
# pipeline.STREAM_ABOVE members compiles each member as the evaluation hands it over, and writes
# it into a staging folder. It must give what the in-memory compile gives, and report a failing
# member exactly as the usual path does (it falls back to it).

STREAMED = 120


def expc_build(proj, *args, env=None, fresh=False):
    """`expc build`; `fresh`: as for a sweep of pipeline.FRESH_STREAM_FROM members or more, whose
    stream's evaluation runs in a fresh interpreter."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    command = [str(Path(sys.executable).parent / "expc"), "build", *args]
    if fresh:
        command = [sys.executable, "-c", "import sys; from expc.compile import pipeline; "
                   "pipeline.FRESH_STREAM_FROM = 1; from expc.cli import main; sys.argv[0] = 'expc'; main()",
                   "build", *args]
    return subprocess.run(command, cwd=proj, capture_output=True, text=True, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("fresh", [False, True], ids=["forked", "fresh-interpreter"])
def test_a_streamed_build_writes_what_the_in_memory_compile_gives(proj, fresh):
    import json

    from expc.compile.canonical import load_manifest
    from expc.compile.write import read_index

    assert STREAMED > pipeline.STREAM_ABOVE
    (proj / "specs" / "grid.jsonnet").write_text(SWEEP % f"{{ seed: std.range(1, {STREAMED // 2}), lr: [1e-3, 3e-4] }}")
    expected = compile_spec(proj / "specs" / "grid.jsonnet", Project(proj))
    result = expc_build(proj, "specs/grid.jsonnet", "--json", fresh=fresh)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["member"], r["digest"]) for r in rows] == [(m.name, m.digest) for m in expected]
    assert f"specs/grid.jsonnet: {STREAMED} members" in result.stderr
    manifests = proj / "manifests"
    assert sorted(p.name for p in manifests.iterdir()) == sorted([f"{m.digest}.json" for m in expected] + ["index"])
    for m in expected:  # each file whole, and the data the in-memory compile made
        assert load_manifest(manifests / f"{m.digest}.json") == (json.loads(json.dumps(m.data)), m.digest)
    index = read_index(Project(proj), "specs/grid.jsonnet")["manifests"]
    assert {d: [(s["member"], s["imports"]) for s in e["sources"]] for d, e in index.items()} == \
        {m.digest: [(m.member, m.imports)] for m in expected}
    again = expc_build(proj, "specs/grid.jsonnet", "--json")  # a rebuild finds every file in place
    assert again.returncode == 0 and json.loads(again.stdout) == rows


@pytest.mark.parametrize("axes", [
    f"{{ seed: std.range(1, {STREAMED // 2}), micro_batch_size: [1, 3] }}",  # a lib assert in half the members
    f"{{ seed: std.range(1, {STREAMED // 2}), lr: [1e-3, true] }}",  # a knob of the wrong type
    f"{{ seed: std.range(1, {STREAMED // 2}), 'train.max_steps': [10, -1] }}",  # a schema error
], ids=["lib-assert", "knob", "schema"])
def test_a_streamed_build_reports_errors_as_the_usual_path_does(proj, axes):
    (proj / "specs" / "grid.jsonnet").write_text(SWEEP % axes)
    try:
        compile_spec(proj / "specs" / "grid.jsonnet", Project(proj))
        raise AssertionError("compiled")
    except ExpcError as err:
        expected = err
    result = expc_build(proj, "specs/grid.jsonnet")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"of {STREAMED} sweep members" in result.stderr
    assert result.stderr == f"error: {expected.render()}\n"
    assert not (proj / "manifests").exists() or list((proj / "manifests").iterdir()) == []


@pytest.mark.parametrize("fresh", [False, True], ids=["forked", "fresh-interpreter"])
def test_a_streamed_build_stops_at_the_memory_bound_and_writes_nothing(proj, fresh):
    # one member in the middle of the sweep holds a 300 MB string
    (proj / "specs" / "grid.jsonnet").write_text(
        "local expc = import 'expc.libsonnet';\nlocal one = import 'one.jsonnet';\n"
        f"local g = expc.sweep.grid(one(), {{ seed: std.range(1, {STREAMED}) }});\n"
        "g + { 'seed=60'+: { logging+: { wandb+: { tags: [std.repeat('x', 300000000)] } } } }\n")
    result = expc_build(proj, "specs/grid.jsonnet", env={"EXPC_EVAL_MEMORY_GIB": "0.5"}, fresh=fresh)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: specs/grid.jsonnet: evaluating the spec used more than 0.5 GiB of memory"), \
        result.stderr
    assert not (proj / "manifests").exists() or list((proj / "manifests").iterdir()) == []


# The stream sends a member's knob table and field names only when they differ from the member
# before's (knobs.STREAM_PROBE), and compiles each distinct top-level field once (streamed.py):
# a member unlike the one before it, in the middle of the stream, is still checked as itself.
MID_STREAM = ("local expc = import 'expc.libsonnet';\nlocal one = import 'one.jsonnet';\n"
              f"local g = expc.sweep.grid(one(), {{ seed: std.range(1, {STREAMED}) }});\n"
              "g + { 'seed=60'+: %s }\n")


@pytest.mark.parametrize("change, error", [
    ("{ knobs+:: { depth: { type: 'integer' } }, depth:: 3 }", None),  # a table of its own, then the lib's again
    ("{ train+: { max_steps: 7 } }", None),  # one field unlike the others'
    ("{ warmup_step:: 3 }", "warmup_step is not a knob"),  # a hidden field the others lack
    ("{ knobs+:: { depth: { type: 'integer' } }, depth:: 'deep' }", "knob depth: "),
    ("{ train+: { max_steps: -1 } }", "train.max_steps"),
    ("{ deepspeed+: { train_batch_size: 999 } }", "train_batch_size is 999"),  # a rule across fields
], ids=["own-table", "one-field", "undeclared", "own-table-wrong-type", "schema", "semantic"])
@pytest.mark.parametrize("fresh", [False, True], ids=["one-run", "two-runs"])
def test_a_member_unlike_the_one_before_streams_as_itself(proj, change, error, fresh):
    import json

    (proj / "specs" / "grid.jsonnet").write_text(MID_STREAM % change)
    try:
        expected = compile_spec(proj / "specs" / "grid.jsonnet", Project(proj))
    except ExpcError as err:
        expected = err
    result = expc_build(proj, "specs/grid.jsonnet", "--json", fresh=fresh)
    if error is None:
        assert result.returncode == 0, result.stderr
        assert [(r["member"], r["digest"]) for r in json.loads(result.stdout)] == [(m.name, m.digest) for m in expected]
    else:
        assert isinstance(expected, ExpcError) and error in expected.render()
        assert result.returncode == 1 and result.stderr == f"error: {expected.render()}\n"
        assert not (proj / "manifests").exists() or list((proj / "manifests").iterdir()) == []


@pytest.mark.parametrize("fresh", [False, True], ids=["one-run", "two-runs"])
def test_a_streamed_sweep_lists_its_imports_in_the_order_one_evaluation_reads_them(proj, fresh):
    """Members that read files of their own: split between two runs, each run reads them in
    another order (run 0 makes members 0, 2, 4...: a, c, b), and the index lists the files as
    one run reading the members in turn would (a, b, c, then d, which member 7 alone reads)."""
    from expc.compile.write import read_index

    assert pipeline.STREAM_WAYS == 2  # the machine has two cores or more: the two-runs case is one
    for name in "abcd":
        (proj / "specs" / f"{name}.libsonnet").write_text(f"'{name}'")
    (proj / "specs" / "grid.jsonnet").write_text(
        "local one = import 'one.jsonnet';\n"
        "{ ['m%03d' % i]: one() + { seed: i, logging+: { wandb+: { tags: [\n"
        "    if i == 7 then import 'd.libsonnet' else if i % 3 == 0 then import 'a.libsonnet'\n"
        "    else if i % 3 == 1 then import 'b.libsonnet' else import 'c.libsonnet'] } } }\n"
        f"  for i in std.range(0, {STREAMED - 1}) }}\n")
    expected = compile_spec(proj / "specs" / "grid.jsonnet", Project(proj))
    own = [f"specs/{name}.libsonnet" for name in "abcd"]
    assert [f for f in expected[0].imports if f in own] == own
    result = expc_build(proj, "specs/grid.jsonnet", fresh=fresh)
    assert result.returncode == 0, result.stderr
    index = read_index(Project(proj), "specs/grid.jsonnet")["manifests"]
    assert {d: [(s["member"], s["imports"]) for s in e["sources"]] for d, e in index.items()} == \
        {m.digest: [(m.member, m.imports)] for m in expected}


def test_a_sweep_that_fits_in_one_run_but_not_in_two_is_built_in_one(proj):
    """Each of two runs holds what the whole sweep holds: here a 4.3-million-element array (about
    360 MB in go's heap) that every member reads. Two runs pass a 0.5 GiB bound together; the
    build then streams the sweep again in one run, which fits, and writes what the in-memory
    compile gives."""
    import json

    (proj / "specs" / "grid.jsonnet").write_text(
        "local one = import 'one.jsonnet';\nlocal big = std.range(1, 4300000);\n"
        f"{{ ['m%03d' % i]: one() + {{ seed: i + std.length(big) }} for i in std.range(0, {STREAMED - 1}) }}\n")
    expected = compile_spec(proj / "specs" / "grid.jsonnet", Project(proj))
    result = expc_build(proj, "specs/grid.jsonnet", "--json", env={"EXPC_EVAL_MEMORY_GIB": "0.5"}, fresh=True)
    assert result.returncode == 0, result.stderr
    assert [(r["member"], r["digest"]) for r in json.loads(result.stdout)] == [(m.name, m.digest) for m in expected]
    assert sorted(p.name for p in (proj / "manifests").glob("*.json")) == sorted(f"{m.digest}.json" for m in expected)


RULES_SWEEP = ("local expc = import 'expc.libsonnet';\nlocal one = import 'one.jsonnet';\n"
               f"expc.sweep.stop_when(expc.sweep.grid(one(), {{ seed: std.range(1, {STREAMED}) }}), [%s])\n")


def test_a_streamed_build_reads_its_rules_with_the_member_names(proj):
    """The early-stopping rules beside a streamed sweep come with its member names, from the same
    evaluation: another evaluation for them alone costs as much (stopping.read_rules is taken
    out of the build's process here, so a call fails)."""
    import json
    import subprocess
    import sys

    (proj / "specs" / "grid.jsonnet").write_text(RULES_SWEEP % "expc.sweep.threshold('val_loss', 4.5, 10)")
    without_read_rules = ("import sys; from expc.compile import stopping; stopping.read_rules = None; "
                          "from expc.cli import main; sys.argv[0] = 'expc'; main()")
    result = subprocess.run([sys.executable, "-c", without_read_rules, "build", "specs/grid.jsonnet"],
                            cwd=proj, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "  early stopping (`expc run --parallel` applies it):\n    expc.sweep.threshold('val_loss', 4.5, 10)\n" \
        in result.stderr
    listed = subprocess.run([sys.executable, "-m", "expc", "ls", "manifests", "--json"], cwd=proj,
                            capture_output=True, text=True)
    rows = json.loads(listed.stdout)
    assert len(rows) == STREAMED and {r["early_stopping"] for r in rows} == {"threshold('val_loss', 4.5, 10)"}


@pytest.mark.parametrize("rules, message", [
    ("expc.sweep.threshold('val_loss', 4.5, -1)",
     "specs/grid.jsonnet: early_stopping[0]: above must be a number and at_step a whole number >= 0"),
    # an error in the rules: the names are evaluated again without them, and the rules alone then
    # report it, located
    ("error 'rules to come'", "specs/grid.jsonnet:3:76: rules to come"),
], ids=["bad-rule", "error"])
def test_a_bad_rule_beside_a_streamed_sweep_stops_the_build(proj, rules, message):
    (proj / "specs" / "grid.jsonnet").write_text(RULES_SWEEP % rules)
    result = expc_build(proj, "specs/grid.jsonnet")
    assert (result.returncode, result.stderr) == (1, f"error: {message}\n")
    assert not (proj / "manifests").exists() or list((proj / "manifests").iterdir()) == []
