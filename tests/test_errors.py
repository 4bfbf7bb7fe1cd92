"""Golden errors: one folder per bad spec under tests/cases/errors/<case>/.

    spec.jsonnet   copied to specs/<case>.jsonnet in a scratch project (a symbolic link is copied
                   as the link)
    links.txt      optional: `PATH -> TARGET` lines, symbolic links made in the project before the
                   build (links out of the project, to /etc or /proc, are made here rather than
                   committed, so no tool that walks the repository follows them); PATH may be the
                   spec itself, specs/<case>.jsonnet, in place of spec.jsonnet
    args.txt       optional: more CLI arguments after the spec path
    env.txt        optional: NAME=VALUE lines set in the environment (small evaluation bounds)
    files/         optional: more files (and relative symlinks) copied into the project root; a
                   spec that names 'assets/...' gets the repository's assets/ (the tiny base model)
    expected.txt   the exact stderr of `expc build specs/<case>.jsonnet ARGS`

Each case must exit with status 1, print nothing on stdout, show no traceback and write nothing
under manifests/. `pytest --update-golden` rewrites expected.txt.
"""
import shlex
import shutil
from pathlib import Path

import pytest

from .conftest import run_cli

CASES = Path(__file__).resolve().parent / "cases" / "errors"
ROOT = CASES.parents[2]


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_error(case, project, golden, capsys, monkeypatch):
    folder = CASES / case
    if (folder / "files").is_dir():
        shutil.copytree(folder / "files", project, symlinks=True, dirs_exist_ok=True)
    links = folder / "links.txt"
    for line in links.read_text().splitlines() if links.exists() else []:
        path, target = (part.strip() for part in line.split("->"))
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).symlink_to(target)
    if (folder / "spec.jsonnet").exists():
        shutil.copy(folder / "spec.jsonnet", project / "specs" / f"{case}.jsonnet", follow_symlinks=False)
    if "'assets/" in (project / "specs" / f"{case}.jsonnet").read_text():
        (project / "assets").symlink_to(ROOT / "assets")  # the committed tiny base model and rows
    args_file = folder / "args.txt"
    extra = shlex.split(args_file.read_text()) if args_file.exists() else []
    env_file = folder / "env.txt"
    for line in env_file.read_text().splitlines() if env_file.exists() else []:
        monkeypatch.setenv(*line.split("=", 1))
    monkeypatch.chdir(project)

    code, out, err = run_cli(["build", f"specs/{case}.jsonnet", *extra], capsys)

    assert (code, out) == (1, ""), err
    assert "Traceback" not in err
    assert str(project) not in err, "messages show project-relative paths"
    assert not (project / "manifests").exists() or not any((project / "manifests").iterdir())
    golden(folder / "expected.txt", err)
