"""Golden manifests: one folder per good spec under tests/cases/manifests/<case>/.

    spec.jsonnet   copied to specs/<case>.jsonnet in a scratch project
    args.txt       optional: more CLI arguments after the spec path (--set, --tla)
    expected.txt   the exact stdout of `expc build`, then every manifest file's bytes under a
                   `== path ==` header, then the spec's index file (manifests/index/specs/<case>.jsonnet.jsonl)

`pytest --update-golden` rewrites expected.txt. A second build must print the same paths and
change no file (identical manifests are skipped).
"""
import re
import shlex
import shutil
from pathlib import Path

import pytest

from expc.compile.canonical import load_manifest
from expc.cli import main

CASES = Path(__file__).resolve().parent / "cases" / "manifests"


def build(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build", *args])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0
    # a sweep's preview (members, axes, cost) is on stderr; nothing else is
    assert err == "" or re.match(r"specs/\w+\.jsonnet: \d+ members?\n", err), err
    return out


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_manifest(case, project, golden, capsys, monkeypatch):
    folder = CASES / case
    shutil.copy(folder / "spec.jsonnet", project / "specs" / f"{case}.jsonnet")
    args_file = folder / "args.txt"
    extra = shlex.split(args_file.read_text()) if args_file.exists() else []
    monkeypatch.chdir(project)

    out = build([f"specs/{case}.jsonnet", *extra], capsys)

    paths = out.splitlines()
    files = sorted((project / "manifests").glob("*.json"))
    assert sorted(paths) == sorted(f"manifests/{p.name}" for p in files)
    files += sorted((project / "manifests" / "index").rglob("*.jsonl"))
    for path in paths:
        load_manifest(project / path)  # content hashes to its name
    text = out + "".join(f"== {p.relative_to(project)} ==\n{p.read_text(encoding='utf-8')}" for p in files)
    golden(folder / "expected.txt", text)

    before = {p: p.stat().st_mtime_ns for p in files}
    assert build([f"specs/{case}.jsonnet", *extra], capsys) == out
    assert {p: p.stat().st_mtime_ns for p in files if p.suffix == ".json"} == \
           {p: t for p, t in before.items() if p.suffix == ".json"}
