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


SPECS = sorted((ROOT / "specs").glob("*.jsonnet"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_the_cpp_binding_gives_go_jsonnets_digests(spec):
    """The C++ Jsonnet binding (`_jsonnet`, the `jsonnet` wheel), a second reference beside
    go-jsonnet: the same members, digests and files read on every committed spec."""
    pytest.importorskip("_jsonnet", reason="the jsonnet wheel is part of the test extras")
    from expc.compile import compile_spec

    def compiled(engine):
        return [(m.member, m.digest, m.imports) for m in compile_spec(spec, engine=engine)]

    assert compiled("jsonnet") == compiled("gojsonnet")


def test_the_cpp_binding_is_held_to_the_same_hermetic_imports(project):
    """The import callback, not the engine, decides what a spec may read."""
    pytest.importorskip("_jsonnet", reason="the jsonnet wheel is part of the test extras")
    from expc.compile.evaluate import evaluate
    from expc.errors import ExpcError
    from expc.project import Project

    (project / "up.libsonnet").write_text("{}")
    for text, message in [
        ("{ a: importstr '/etc/passwd' }", "specs/escape.jsonnet:1:6: import '/etc/passwd': absolute paths are "
                                           "refused; import relative to lib/ or the spec's folder"),
        ("import '../up.libsonnet'", "specs/escape.jsonnet:1:1: import '../up.libsonnet' resolves to up.libsonnet, "
                                     "outside lib/ and the spec's folder"),
    ]:
        (project / "specs" / "escape.jsonnet").write_text(text)
        with pytest.raises(ExpcError) as info:
            evaluate(project / "specs" / "escape.jsonnet", Project(project), engine="jsonnet")
        assert info.value.render() == message
