"""evaluate: hermetic go-jsonnet (imports from lib/ and the spec's folder only, no environment),
top-level arguments, imports recorded, errors located at file:line:col."""
import pytest

from expc.errors import ExpcError
from expc.compile.evaluate import evaluate, parse_tla
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
    assert error_of(proj, path) == ("specs/s.jsonnet:1:1: Undefined external variable: HOME_SECRET; expc passes no "
                                    "external variables (nothing from the environment reaches a spec): declare a "
                                    "top-level argument, `function(name=default)`, and give it with --tla name=value")


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


def test_imports_are_listed_once(proj):
    # models.libsonnet imports names.libsonnet from lib/, the spec imports it from specs/: go-jsonnet
    # asks for it once per importing folder
    path = spec(proj, "local n = import 'names.libsonnet'; local m = import 'models.libsonnet';\n"
                      "{ d: n.distance('a', 'b'), l: m.gpt_debug.n_layer }")
    assert evaluate(path, proj).imports == ["lib/names.libsonnet", "lib/models.libsonnet"]


@pytest.mark.parametrize("engine", ["gojsonnet", "rjsonnet"])
def test_refused_import_is_blamed_on_the_file_that_imports_it(proj, engine):
    pytest.importorskip(engine if engine == "rjsonnet" else "_gojsonnet")
    (proj.root / "up.libsonnet").write_text("{}")
    # a decoy that sorts first and mentions the same import, and a comment in the spec itself
    (proj.specs / "aaa.jsonnet").write_text("// import '../up.libsonnet' is refused\n{}\n")
    path = spec(proj, "// was: import '../up.libsonnet'\n{\n  y: import '../up.libsonnet',\n}\n", "z.jsonnet")
    with pytest.raises(ExpcError) as info:
        evaluate(path, proj, engine=engine)
    assert info.value.render() == ("specs/z.jsonnet:3:6: import '../up.libsonnet' resolves to up.libsonnet, "
                                   "outside lib/ and the spec's folder")


def test_refused_import_with_top_level_arguments(proj):
    (proj.root / "up.libsonnet").write_text("{}")
    path = spec(proj, "function(lr=1)\n  { y: import '../up.libsonnet' }\n")
    assert error_of(proj, path, {"lr": 2}) == ("specs/s.jsonnet:2:8: import '../up.libsonnet' resolves to "
                                               "up.libsonnet, outside lib/ and the spec's folder")


def test_syntax_error_in_an_imported_file(proj):
    (proj.specs / "bad.libsonnet").write_text("{ a: }")
    path = spec(proj, "import 'bad.libsonnet'")
    assert error_of(proj, path) == ('specs/bad.libsonnet:1:6: Unexpected: "}" while parsing terminal\n'
                                    "  called from specs/s.jsonnet:1:1")
    fn = spec(proj, "function(lr=1)\n  { a: 1 } + import 'bad.libsonnet'", "fn.jsonnet")
    assert error_of(proj, fn, {"lr": 2}) == ('specs/bad.libsonnet:1:6: Unexpected: "}" while parsing terminal\n'
                                             "  called from specs/fn.jsonnet:2:14")
    # with --tla the spec is first parsed for an import too (to ask whether it is a function)
    broken = spec(proj, "function(lr=1) { a: }", "broken.jsonnet")
    assert error_of(proj, broken, {"lr": 2}) == 'specs/broken.jsonnet:1:21: Unexpected: "}" while parsing terminal'


HARDWARE = ("a100_40gb_x1, a100_80gb_x8, cpu_laptop, get, h100_80gb_nodes, h100_80gb_x1, h100_80gb_x8, nodes, "
            "rtx4090_24gb")
MODELS = "get, gpt, gpt_124m, gpt_1_3b, gpt_2_7b, gpt_350m, gpt_6_7b, gpt_760m, gpt_cpu, gpt_debug, hf, hf_configs"


@pytest.mark.parametrize("expr, hint", [
    ("expc.hardware.h100_80gb_x4",
     f'h100_80gb_x4 (did you mean "h100_80gb_x1" or "h100_80gb_x8"?); expc.hardware has {HARDWARE}'),
    ("expc.models['gpt_dbug']", f'gpt_dbug (did you mean "gpt_debug"?); expc.models has {MODELS}'),
    # through locals bound to a table, to expc, or to a lib file
    ("m.gpt_1_3", f'gpt_1_3 (did you mean "gpt_1_3b"?); expc.models has {MODELS}'),
    ("z . stage4", 'stage4 (did you mean "stage"?); expc.zero has offload_optimizer, offload_param, stage, '
                   "stage0, stage1, stage2, stage3"),
    ("e.presets.quick_tset", 'quick_tset (did you mean "quick_test"?); expc.presets has bf16, fp16, fp32, '
                             "full_training, quick_test"),
    ("(import 'optim.libsonnet').warmup_constnt",
     'warmup_constnt (did you mean "warmup_constant"?); expc.optim has adamw, adamw_with, warmup_constant, '
     "warmup_cosine, warmup_linear_decay"),
    # not a lib table: no name from elsewhere, which would mislead (did-you-mean only offers
    # names that exist where the field was looked up)
    ("o.gpt_dbug", "gpt_dbug"),
    ("{ k: self.micro_batch }.k", "micro_batch"),
    ("expc.hardware.cpu_laptop.procs", "procs"),
    ("o.zzz", "zzz"),
])
def test_unknown_field_suggests_names(proj, expr, hint):
    head = ("local expc = import 'expc.libsonnet', e = expc;\n"
            "local m = expc.models, z = expc.zero; // z: import 'zero.libsonnet'\n"
            "local o = { a: 1 };\n")
    path = spec(proj, head + "{ x: " + expr + " }\n")
    message = error_of(proj, path)
    # `{ x: ... }` has no schema field, so it reads as a sweep whose member x failed
    assert message == f"specs/s.jsonnet[x] specs/s.jsonnet:4:{6 if 'self' not in expr else 11}: Field does not exist: {hint}"


SWEEP = """function(limit=3)
  local member(i) = { schema: 'expc/manifest/v1', n: assert i < limit : 'member %d is over the limit' % i; i };
  { ['m%d' % i]: member(i) for i in std.range(0, 8) }
"""


def test_sweep_errors_name_each_failing_member(proj):
    # members m7 and m8 fail; the others are not reported
    message = error_of(proj, spec(proj, SWEEP), {"limit": 7})
    assert message == ("2 problems:\n"
                       "- specs/s.jsonnet[m7] specs/s.jsonnet:2:54: member 7 is over the limit\n"
                       "- specs/s.jsonnet[m8] specs/s.jsonnet:2:54: member 8 is over the limit")


def test_sweep_errors_stop_after_five_members(proj):
    message = error_of(proj, spec(proj, SWEEP), {"limit": 1})
    assert message.splitlines()[1:] == [
        *(f"- specs/s.jsonnet[m{i}] specs/s.jsonnet:2:54: member {i} is over the limit" for i in range(1, 6)),
        "- specs/s.jsonnet: stopped after 5 failing sweep members; fix these and build again to check the rest"]


def test_an_error_outside_any_member_is_reported_once(proj):
    text = "local names = error 'no names'; { [n]: { schema: 'expc/manifest/v1' } for n in names }\n"
    assert error_of(proj, spec(proj, text)) == "specs/s.jsonnet:1:15: no names"


def test_a_section_without_a_field_the_lib_reads_blames_the_spec_line(project):
    """The lib reads exp.model.vocab_size; the spec's model lacks it: the spec's line comes first,
    with a did-you-mean among that model's own fields, and the lib line second."""
    from expc.compile.pipeline import compile_spec

    (project / "specs" / "nov.jsonnet").write_text(
        "local expc = import 'expc.libsonnet';\n"
        "expc.experiment + {\n"
        "  hardware: expc.hardware.cpu_laptop,\n"
        "  model: { arch: 'gpt', n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, vocab_siz: 256 },\n"
        "  data: expc.data.synthetic(),\n"
        "}\n")
    with pytest.raises(ExpcError) as info:
        compile_spec(project / "specs" / "nov.jsonnet")
    assert info.value.render() == (
        "specs/nov.jsonnet:4: model has no field 'vocab_size' (did you mean \"vocab_siz\"?), which the lib reads\n"
        "  (read at lib/experiment.libsonnet:42:68)")


def test_a_tla_that_breaks_a_rule_is_named_before_the_lib_line(project):
    from expc.compile.pipeline import compile_spec

    (project / "specs" / "t.jsonnet").write_text(
        "local expc = import 'expc.libsonnet';\n"
        "function(seq_len=32)\n"
        "  expc.experiment + {\n"
        "    hardware: expc.hardware.cpu_laptop,\n"
        "    model: expc.models.gpt_debug { block_size: seq_len },\n"
        "    data: expc.data.synthetic(),\n"
        "  }\n")
    with pytest.raises(ExpcError) as info:
        compile_spec(project / "specs" / "t.jsonnet", tla={"seq_len": "2k"})
    assert info.value.render() == ('specs/t.jsonnet $.model.block_size: "2k" is not of type "integer"\n'
                                   '  (set at --tla seq_len="2k", through specs/t.jsonnet:5)')


def test_an_import_asked_again_is_answered_from_memory(proj, monkeypatch):
    """go-jsonnet asks each time an import is evaluated: an import in a field's body asks once per
    object, every member of a sweep. The first answer is kept; a refusal is not."""
    from pathlib import Path

    from expc.compile.evaluate import Importer

    (proj.specs / "part.libsonnet").write_text("{ x: 1 }")
    importer = Importer(spec(proj, "{}").resolve(), proj)
    reads, read_bytes = [], Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or read_bytes(self))
    first = importer(str(proj.specs), "part.libsonnet")
    assert [importer(str(proj.specs), "part.libsonnet") for _ in range(50)] == [first] * 50
    assert reads == ["part.libsonnet"] and importer.imports == ["specs/part.libsonnet"]
    for _ in range(2):
        with pytest.raises(RuntimeError):
            importer(str(proj.specs), "/etc/hostname")
    assert [r.message for r in importer.refusals] == [
        "import '/etc/hostname': absolute paths are refused; import relative to lib/ or the spec's folder"] * 2
    importer.start_again()  # another evaluation: asked afresh
    assert importer(str(proj.specs), "part.libsonnet") == first
    assert reads == ["part.libsonnet"] * 2 and importer.imports == ["specs/part.libsonnet"] and not importer.refusals
