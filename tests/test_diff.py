"""`expc diff`: golden text, markdown and JSON for typical changes (tests/cases/diff/<case>/ holds
old.jsonnet, new.jsonnet and the expected outputs), exit statuses, digest prefixes, --git."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from expc.compile.canonical import digest, pretty
from expc.cli import cli, main

CASES = Path(__file__).parent / "cases" / "diff"
ROOT = Path(__file__).resolve().parent.parent


def run(args):
    result = CliRunner().invoke(cli, args, standalone_mode=False)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    return project


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()))
def test_golden_diffs(case, in_project, golden):
    for side in ("old", "new"):
        shutil.copy(CASES / case / f"{side}.jsonnet", in_project / "specs" / f"{side}.jsonnet")
    args = ["diff", "specs/old.jsonnet", "specs/new.jsonnet"]
    text = run(args)
    assert text.return_value == 1
    golden(CASES / case / "diff.txt", text.output)
    golden(CASES / case / "diff.md", run([*args, "--format", "markdown"]).output)
    golden(CASES / case / "diff.json", run([*args, "--json"]).output)


def test_equal_sides_exit_0_and_print_nothing(in_project):
    shutil.copy(CASES / "lr" / "old.jsonnet", in_project / "specs" / "a.jsonnet")
    shutil.copy(CASES / "lr" / "old.jsonnet", in_project / "specs" / "b.jsonnet")
    result = run(["diff", "specs/a.jsonnet", "specs/b.jsonnet"])
    assert (result.return_value, result.output) == (0, "")
    markdown = run(["diff", "specs/a.jsonnet", "specs/b.jsonnet", "--format", "markdown"]).output
    assert "No manifest changes." in markdown


def test_manifest_paths_and_digest_prefixes(in_project):
    for side in ("old", "new"):
        shutil.copy(CASES / "zero_stage" / f"{side}.jsonnet", in_project / "specs" / f"{side}.jsonnet")
    built = run(["build", "specs/old.jsonnet", "specs/new.jsonnet", "--json"])
    old, new = (row["digest"] for row in json.loads(built.output))
    by_prefix = run(["diff", old[:8], new[:8]])
    assert by_prefix.return_value == 1
    assert by_prefix.output.splitlines()[:3] == [
        f"--- manifests/{old}.json", f"+++ manifests/{new}.json",
        f"specs/old.jsonnet -> specs/new.jsonnet  {old[:12]} -> {new[:12]}"]
    assert "    deepspeed.zero_optimization.stage: 2 -> 3" in by_prefix.output
    # a manifest against the spec that built it: equal
    assert run(["diff", f"manifests/{old}.json", "specs/old.jsonnet"]).return_value == 0


def test_one_spec_against_its_committed_manifests(in_project):
    spec = in_project / "specs" / "sweep.jsonnet"
    shutil.copy(CASES / "sweep_member_added" / "old.jsonnet", spec)
    run(["build", "specs/sweep.jsonnet"])
    shutil.copy(CASES / "sweep_member_added" / "new.jsonnet", spec)
    result = run(["diff", "specs/sweep.jsonnet"])
    assert result.return_value == 1
    assert result.output.splitlines()[0] == "--- specs/sweep.jsonnet (committed)"
    assert result.output.splitlines()[-1] == "1 added, 2 unchanged"


def test_errors_exit_2_with_one_message(in_project, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", "manifests/nope.json", "specs/old.jsonnet"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: no such manifest: manifests/nope.json\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["diff"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: give two manifests or specs (OLD NEW), one spec, or --git REV\n"


def test_colour_on_a_terminal_only_in_text(in_project):
    for side in ("old", "new"):
        shutil.copy(CASES / "lr" / f"{side}.jsonnet", in_project / "specs" / f"{side}.jsonnet")
    args = ["diff", "specs/old.jsonnet", "specs/new.jsonnet"]

    def coloured(*extra):
        return CliRunner().invoke(cli, [*args, *extra], standalone_mode=False, color=True).output

    text = coloured()
    assert "    deepspeed.optimizer.params.lr: \x1b[31m0.001\x1b[0m -> \x1b[32m0.0003\x1b[0m" in text
    assert "\x1b[" not in coloured("--format", "markdown")
    assert "\x1b[" not in coloured("--json")
    assert "\x1b[" not in run(args).output  # not a terminal: plain


def test_unknown_format_exits_2(in_project, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", "specs/old.jsonnet", "specs/new.jsonnet", "--format", "bogus"])
    assert exit_info.value.code == 2
    assert "Invalid value for '--format': 'bogus' is not one of 'text', 'markdown'." in capsys.readouterr().err


def _committed(project: Path, data: dict) -> str:
    """Write `data` as a manifest file named by its digest (as an older expc would have)."""
    name = digest(data)
    (project / "manifests").mkdir(exist_ok=True)
    (project / "manifests" / f"{name}.json").write_text(pretty(data), encoding="utf-8")
    return name


def _built(project: Path, case: str, side: str) -> dict:
    shutil.copy(CASES / case / f"{side}.jsonnet", project / "specs" / f"{side}.jsonnet")
    return json.loads(run(["show", f"specs/{side}.jsonnet"]).output)


def test_a_bug_exits_2_with_its_traceback(in_project, capsys):
    # 1 means "they differ", which CI accepts: a crash must never look like that.
    broken = _built(in_project, "lr", "old")
    broken["model"]["n_embd"] = "wide"  # nothing validates a manifest read back; arithmetic fails
    name = _committed(in_project, broken)
    shutil.copy(CASES / "lr" / "new.jsonnet", in_project / "specs" / "new.jsonnet")
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", name[:12], "specs/new.jsonnet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.rstrip().splitlines()[-1].startswith("TypeError: ")


def test_older_manifest_leaves_out_the_quantities_it_cannot_give(in_project):
    older = _built(in_project, "model_size", "old")
    del older["train"]["max_steps"], older["hardware"]["peak_tflops"]  # fields of a later schema
    old = _committed(in_project, older)
    _built(in_project, "model_size", "new")
    result = run(["diff", old[:12], "specs/new.jsonnet", "--json"])
    assert result.return_value == 1
    (pair,) = json.loads(result.output)["pairs"]
    assert {"path": "train.max_steps", "new": 50} in pair["changes"]["train"]
    assert [d["name"] for d in pair["derived"]] == [
        "parameters", "tokens per step", "memory per device"]


def _git(root, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root,
                   check=True, capture_output=True)


def test_git_mode_pairs_manifests_by_their_source(in_project):
    specs = in_project / "specs"
    shutil.copy(CASES / "lr" / "old.jsonnet", specs / "lr.jsonnet")
    shutil.copy(CASES / "sweep_member_added" / "old.jsonnet", specs / "sweep.jsonnet")
    shutil.copy(CASES / "zero_stage" / "old.jsonnet", specs / "same.jsonnet")
    run(["build", "specs/lr.jsonnet", "specs/sweep.jsonnet", "specs/same.jsonnet"])
    _git(in_project, "init", "-q")
    _git(in_project, "add", ".")
    _git(in_project, "commit", "-q", "-m", "base")
    shutil.copy(CASES / "lr" / "new.jsonnet", specs / "lr.jsonnet")
    shutil.copy(CASES / "sweep_member_added" / "new.jsonnet", specs / "sweep.jsonnet")
    run(["build", "specs/lr.jsonnet", "specs/sweep.jsonnet"])
    result = run(["diff", "--git", "HEAD"])
    assert result.return_value == 1
    lines = result.output.splitlines()
    assert lines[:2] == ["--- HEAD", "+++ working tree"]
    assert lines[2].startswith("specs/lr.jsonnet  ")
    assert lines[4] == "    deepspeed.optimizer.params.lr: 0.001 -> 0.0003"
    assert lines[5].startswith("+ specs/sweep.jsonnet[lr=4e-3]  added (")
    assert lines[-1] == "1 changed, 1 added"
    data = json.loads(run(["diff", "--git", "HEAD", "--json"]).output)
    assert [p["status"] for p in data["pairs"]] == ["changed", "added"]
    _git(in_project, "add", ".")
    _git(in_project, "commit", "-q", "-m", "change")
    assert run(["diff", "--git", "HEAD"]).return_value == 0


def test_review_doc_shows_the_real_output(monkeypatch):
    monkeypatch.chdir(ROOT)  # compiles the repository's specs in memory; writes nothing
    command = "expc diff specs/small.jsonnet specs/large.jsonnet"
    shown = (ROOT / "docs" / "review.md").read_text().split(f"    $ {command}\n", 1)[1]
    output = run(command.split()[1:]).output
    assert shown.startswith("".join(f"    {line}\n" for line in output.splitlines())), \
        "docs/review.md: paste the command's current output"


def test_one_spec_counts_its_builds_with_set(in_project):
    """`expc diff SPEC` holds every build the index records against the spec now, as `expc check`
    does: the plain build and the one made with --set, each compiled again with its arguments."""
    spec = in_project / "specs" / "tuned.jsonnet"
    shutil.copy(CASES / "lr" / "old.jsonnet", spec)
    plain = json.loads(run(["build", "specs/tuned.jsonnet", "--json"]).output)[0]["digest"]
    shaped = json.loads(run(["build", "specs/tuned.jsonnet", "--set", "seed=7", "--json"]).output)[0]["digest"]
    assert run(["diff", "specs/tuned.jsonnet"]).return_value == 0  # both up to date
    shutil.copy(CASES / "lr" / "new.jsonnet", spec)
    pairs = json.loads(run(["diff", "specs/tuned.jsonnet", "--json"]).output)["pairs"]
    assert [(p["label"], p["status"], p["old_digest"]) for p in pairs] == [
        ("specs/tuned.jsonnet", "changed", plain), ("specs/tuned.jsonnet --set seed=7", "changed", shaped)]
    text = run(["diff", "specs/tuned.jsonnet"])
    assert text.return_value == 1
    assert text.output.count("deepspeed.optimizer.params.lr: 0.001 -> 0.0003") == 2
    assert text.output.splitlines()[-1] == "2 changed"
