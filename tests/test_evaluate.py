"""evaluate: hermetic go-jsonnet (imports from lib/ and the spec's folder only, no environment),
top-level arguments, imports recorded, errors located at file:line:col."""
import pytest

from expc.errors import ExpcError
from expc.evaluate import evaluate, parse_tla
from expc.project import Project


@pytest.fixture
def proj(project):
    return Project(project)


def spec(proj, text, name="s.jsonnet"):
    path = proj.specs / name
    path.write_text(text)
    return path


def error_of(proj, path, tla=None):
    with pytest.raises(ExpcError) as info:
        evaluate(path, proj, tla)
    return info.value.render()


def test_records_imports_in_first_read_order(proj):
    (proj.specs / "local.libsonnet").write_text("{ x: 1 }")
    path = spec(proj, "local l = import 'local.libsonnet'; local n = import 'names.libsonnet'; "
                      "l { d: n.distance('ab', 'b') }")
    evaluation = evaluate(path, proj)
    assert evaluation.document == {"x": 1, "d": 1}
    assert evaluation.imports == ["specs/local.libsonnet", "lib/names.libsonnet"]


def test_no_environment_reaches_the_spec(proj, monkeypatch):
    monkeypatch.setenv("HOME_SECRET", "x")
    path = spec(proj, "std.extVar('HOME_SECRET')")
    assert error_of(proj, path) == "specs/s.jsonnet:1:1: Undefined external variable: HOME_SECRET"


def test_top_level_arguments(proj):
    path = spec(proj, "function(lr=1, name='a') { lr: lr, name: name }")
    assert evaluate(path, proj).document == {"lr": 1, "name": "a"}
    assert evaluate(path, proj, parse_tla(["lr=3e-4", "name=b"])).document == {"lr": 3e-4, "name": "b"}


def test_parse_tla():
    assert parse_tla(["a=1", "b=x", "c=[1, 2]", "d="]) == {"a": 1, "b": "x", "c": [1, 2], "d": ""}
    with pytest.raises(ExpcError, match="given twice"):
        parse_tla(["a=1", "a=2"])
    with pytest.raises(ExpcError, match="expected name=value with a Jsonnet identifier"):
        parse_tla(["1a=2"])


def test_tla_errors(proj):
    fn = spec(proj, "// a comment: function(x)\nfunction(lr=1, warmup=2) { lr: lr }")
    assert error_of(proj, fn, {"warmpu": 1}) == ("--tla warmpu: specs/s.jsonnet has no parameter 'warmpu' "
                                                 '(did you mean "warmup"?); it takes lr, warmup')
    plain = spec(proj, "{ a: 1 }", "plain.jsonnet")
    assert error_of(proj, plain, {"lr": 1}) == ("--tla lr: specs/plain.jsonnet takes no top-level arguments "
                                                "(make it a function: `function(lr=3e-4) ...`)")


def test_lib_assert_points_at_lib_and_spec(proj):
    path = spec(proj, "local m = import 'models.libsonnet';\n\nm.get('gpt_12m')")
    assert error_of(proj, path).startswith('lib/names.libsonnet:')
    assert error_of(proj, path).endswith('\n  called from specs/s.jsonnet:3:1')


@pytest.mark.parametrize("text, message", [
    ("{ a: }", "specs/s.jsonnet:1:6: Unexpected: \"}\" while parsing terminal"),
    ("{ a: 1 } +", "specs/s.jsonnet:1:11: Unexpected end of file"),
    ("error 'stop here'", "specs/s.jsonnet:1:1: stop here"),
    ("import 'missing.libsonnet'", "specs/s.jsonnet:1:1: import 'missing.libsonnet': not found in the "
                                   "importing file's folder or lib/"),
])
def test_errors_are_located(proj, text, message):
    assert error_of(proj, spec(proj, text)) == message


def test_missing_spec(proj):
    assert error_of(proj, "specs/none.jsonnet") == "no such spec: specs/none.jsonnet"


def test_imports_outside_the_roots_are_refused(proj, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "x.libsonnet"
    outside.write_text("{}")
    (proj.specs / "link.libsonnet").symlink_to(outside)
    (proj.root / "up.libsonnet").write_text("{}")
    # a lib file may not reach out either
    (proj.lib / "sneaky.libsonnet").write_text("import '../up.libsonnet'")
    cases = {
        "import 'link.libsonnet'": "outside lib/ and the spec's folder",
        "import '../up.libsonnet'": "resolves to up.libsonnet, outside lib/ and the spec's folder",
        f"import '{outside}'": "absolute paths are refused",
        "import 'sneaky.libsonnet'": "lib/sneaky.libsonnet:1:1: import '../up.libsonnet' resolves to up.libsonnet",
    }
    for text, fragment in cases.items():
        assert fragment in error_of(proj, spec(proj, text))
