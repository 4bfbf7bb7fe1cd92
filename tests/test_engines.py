"""The opt-in rjsonnet engine is held to go-jsonnet's digests (and member names) on every spec."""
import shutil
from pathlib import Path

import pytest

from expc.compile import compile_spec
from expc.errors import ExpcError
from expc.compile.evaluate import evaluate
from expc.project import Project

pytest.importorskip("rjsonnet", reason="the rjsonnet extra is part of the test extras")

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").rglob("*.jsonnet"))
CASES = sorted((ROOT / "tests" / "cases" / "manifests").glob("*/spec.jsonnet"))


def compiled(spec, engine, project=None, tla=None):
    return [(m.member, m.digest, m.imports) for m in compile_spec(spec, project, tla=tla, engine=engine)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_same_digests_on_every_spec(spec):
    assert compiled(spec, "rjsonnet") == compiled(spec, "gojsonnet")


@pytest.mark.parametrize("spec", CASES, ids=lambda p: p.parent.name)
def test_same_digests_on_golden_cases(spec, project):
    target = project / "specs" / f"{spec.parent.name}.jsonnet"
    shutil.copy(spec, target)
    tla = {"lr": 1e-3, "name": "probe"} if spec.parent.name == "tla" else None
    assert compiled(target, "rjsonnet", Project(project), tla) == compiled(target, "gojsonnet", Project(project), tla)


def test_errors_are_located_and_hermetic(project):
    proj = Project(project)
    bad = project / "specs" / "bad.jsonnet"
    bad.write_text("local z = import 'zero.libsonnet';\n\nz.stage(5)")
    with pytest.raises(ExpcError) as info:
        evaluate(bad, proj, engine="rjsonnet")
    assert info.value.render().startswith("lib/zero.libsonnet:")
    assert "ZeRO stage must be 0, 1, 2 or 3, got 5" in info.value.render()
    escape = project / "specs" / "escape.jsonnet"
    (project / "up.libsonnet").write_text("{}")
    escape.write_text("import '../up.libsonnet'")
    with pytest.raises(ExpcError) as info:
        evaluate(escape, proj, engine="rjsonnet")
    assert info.value.render() == ("specs/escape.jsonnet:1:1: import '../up.libsonnet' resolves to "
                                   "up.libsonnet, outside lib/ and the spec's folder")
    fn = project / "specs" / "fn.jsonnet"
    fn.write_text("function(lr=1) { lr: lr }")
    with pytest.raises(ExpcError) as info:
        evaluate(fn, proj, {"lrr": 2}, engine="rjsonnet")
    assert info.value.render() == ("--tla lrr: specs/fn.jsonnet has no parameter 'lrr' "
                                   '(did you mean "lr"?); it takes lr')
