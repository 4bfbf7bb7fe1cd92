"""docs/api.md runs as written: its examples are doctests, run in order in a scratch copy of the
project that is a git repository, one real 20-step training of specs/tiny.jsonnet through
`expc.run` included. The run is then checked from outside: its metadata names the scratch
repository's commit (not the checkout expc runs from), and `expc ls runs` lists it."""
from __future__ import annotations

import doctest
import json
import os
import shutil
import subprocess

import pytest

from expc.cli import main

from . import conftest
from .conftest import ROOT


def git(folder, *args) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=folder,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_api_page_examples_run(tmp_path, monkeypatch, capsys):
    project = tmp_path / "research"
    project.mkdir()
    for folder in ("lib", "specs"):
        shutil.copytree(ROOT / folder, project / folder)
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-qm", "specs")
    # the environment of the other launches here (no W&B account, a short rendezvous timeout),
    # and the default runs folder, which the page shows
    for name in [n for n in os.environ if n.startswith("WANDB_") or n == "EXPC_RUNS_DIR"]:
        monkeypatch.delenv(name)
    for name, value in conftest.test_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(project)

    result = doctest.testfile(str(ROOT / "docs" / "api.md"), module_relative=False, globs={},
                              optionflags=doctest.ELLIPSIS)
    out, _ = capsys.readouterr()
    assert (result.failed, result.attempted > 10) == (0, True), f"docs/api.md:\n{out}"

    (run_dir,) = [p for p in (project / "runs").iterdir() if (p / "metadata.json").is_file()]
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["git"]["commit"] == git(project, "rev-parse", "HEAD")
    # dirty: what the page built is not committed; the run's own folder is no change
    assert (meta["git"]["dirty"], sorted(meta["git"]["changed"])) == (
        True, [f"manifests/{run_dir.name}.json", "manifests/index/specs/tiny.jsonnet.jsonl"])
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    with pytest.raises(SystemExit):
        main(["ls", "runs", "--json"])
    rows = json.loads(capsys.readouterr()[0])
    assert [(r["digest"], r["name"], r["status"], r["val_loss"]) for r in rows] == [
        (run_dir.name[:12], "specs/tiny.jsonnet --set train.max_steps=20", "completed", round(last["val_loss"], 4))]
