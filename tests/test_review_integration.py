"""The review integrations point at commands that exist: the pre-commit hook and the example CI
workflow (docs/ci-example.yml) both call real `expc` commands with options they accept."""
from __future__ import annotations

import shlex

import yaml

from expc.cli import cli

from .conftest import ROOT


def _accepts(argv: list[str]) -> None:
    """Parse argv with the real CLI (no run): an unknown command or option raises."""
    assert argv[0] == "expc"
    command = cli.get_command(None, argv[1])
    assert command is not None, f"no such command: {argv[1]}"
    command.make_context(argv[1], [a for a in argv[2:] if a != ">"], resilient_parsing=False)


def test_pre_commit_hook_runs_expc_check():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert hook["id"] == "expc-check" and hook["pass_filenames"] is False
    assert hook["language"] == "python"
    _accepts(shlex.split(hook["entry"]))


def test_ci_example_checks_and_posts_a_markdown_diff():
    workflow = yaml.safe_load((ROOT / "docs" / "ci-example.yml").read_text())
    steps = workflow["jobs"]["review"]["steps"]
    commands = [line.strip() for step in steps for line in step.get("run", "").splitlines()
                if line.strip().startswith("expc ")]
    assert commands[0] == "expc check"
    diff = shlex.split(commands[1].split(">")[0].replace('"origin/${{ github.base_ref }}"', "origin/main"))
    assert diff == ["expc", "diff", "--git", "origin/main", "--format", "markdown"]
    for command in commands:
        _accepts(shlex.split(command.split(">")[0].replace("${{ github.base_ref }}", "main")))


def test_ci_example_installs_expc_from_a_pinned_git_reference():
    workflow = yaml.safe_load((ROOT / "docs" / "ci-example.yml").read_text())
    (install,) = [s for s in workflow["jobs"]["review"]["steps"] if "pip install" in s.get("run", "")]
    assert install["run"].strip() == 'pip install "expc @ git+${EXPC_REPO}@${EXPC_REF}"'
    ref = install["env"]["EXPC_REF"]
    assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref)  # a commit, not a branch
