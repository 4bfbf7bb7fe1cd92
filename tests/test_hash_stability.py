"""Digests do not depend on where or how expc runs: every committed spec compiles to the digests
recorded in the repository (manifests/index.json) from another working directory, and under
another locale, time zone, hash seed and a noisy environment."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from expc.compile.write import read_index
from expc.project import Project

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(a copy of the project, {(spec, member, tla, set): digest} as the repository records it)."""
    root = tmp_path_factory.mktemp("stable")
    for folder in ("lib", "specs", "manifests", "assets", "scripts"):
        shutil.copytree(ROOT / folder, root / folder, symlinks=True)
    index = read_index(Project(root))["manifests"]
    digests = {}
    for digest, entry in index.items():
        for s in entry["sources"]:
            if s["spec"].endswith(".jsonnet"):
                digests[(s["spec"], s.get("member"), json.dumps(s.get("tla", {})), json.dumps(s.get("set", [])))] = digest
    return root, digests


ENVIRONMENTS = {
    "another directory": {},
    "locale, time zone, hash seed": {"LC_ALL": "C", "LANG": "C", "TZ": "Pacific/Chatham", "PYTHONHASHSEED": "4242"},
    "a noisy environment": {"PYTHONHASHSEED": "7", "JSONNET_PATH": "/nonexistent", "EXPC_NOISE": "1",
                            "WANDB_API_KEY": "not-a-key", "HOME": "/nonexistent-home", "LC_NUMERIC": "C"},
}


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_every_spec_compiles_to_the_recorded_digests(recorded, tmp_path, name):
    root, digests = recorded
    specs = sorted({spec for spec, *_ in digests})
    env = {**os.environ, **ENVIRONMENTS[name]}
    # From a folder outside the project, every spec by its absolute path, through the CLI.
    out = subprocess.run([sys.executable, "-m", "expc", "build", "--json", *(str(root / s) for s in specs)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    built = {(r["spec"], r["member"], "{}", json.dumps(r["set"])): r["digest"] for r in json.loads(out.stdout)}
    plain = {key: digest for key, digest in digests.items() if key[2] == "{}" and key[3] == "[]"}
    assert plain and {key: built.get(key) for key in plain} == plain
