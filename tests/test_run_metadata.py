"""The git state a run records: that of the project holding the manifest (the specs' repository),
not of the checkout expc is installed from; read by `trainer.rundir.project_git` in a scratch git
project. tests/trainer/test_project_runs.py checks a real run's metadata.json against the same."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from trainer.rundir import expc_version, project_git

from .conftest import ROOT


def git(folder, *args) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=folder,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository whose project lives in a subfolder (as in a monorepo), committed clean."""
    project = tmp_path / "research"
    (project / "specs").mkdir(parents=True)
    shutil.copytree(ROOT / "lib", project / "lib")
    (project / "specs" / "a.jsonnet").write_text("{}\n")
    (tmp_path / "README").write_text("outside the project\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "start")
    return project


def test_a_clean_project_names_its_own_commit(repo):
    head = git(repo, "rev-parse", "HEAD")
    assert project_git(repo) == {"commit": head, "dirty": False, "changed": []}


def test_new_and_edited_files_make_it_dirty_and_are_named(repo):
    (repo / "specs" / "new.jsonnet").write_text("{}\n")  # a new spec, never committed
    (repo / "specs" / "a.jsonnet").write_text("{ seed: 1 }\n")
    state = project_git(repo)
    assert state["dirty"] and sorted(state["changed"]) == ["research/specs/a.jsonnet", "research/specs/new.jsonnet"]
    assert len(project_git(repo, listed=1)["changed"]) == 1


def test_the_runs_folder_and_files_outside_the_project_do_not_count(repo):
    (repo / "runs" / "d" / "logs").mkdir(parents=True)
    (repo / "runs" / "d" / "metadata.json").write_text("{}")
    (repo.parent / "README").write_text("edited, but not part of the project\n")
    assert project_git(repo, runs=repo / "runs")["dirty"] is False
    assert project_git(repo)["dirty"] is True  # without naming the runs folder, its files are untracked


def test_outside_a_repository_there_is_no_commit(project):
    assert project_git(project) == {"commit": None, "dirty": False, "changed": []}


def test_expc_version_is_the_installed_distributions():
    from importlib.metadata import version

    assert expc_version() == version("expc")
