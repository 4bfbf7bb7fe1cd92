"""overrides: `--set` is a late-bound Jsonnet patch on the spec's result. What the spec derives
from an overridden value follows it; hidden knobs are reachable; Hydra's +, ++ and ~ forms are
understood; every mistake names the `--set` it came from."""
import pytest

from expc.compile.overrides import parse_set
from expc.compile.pipeline import compile_spec
from expc.errors import ExpcError

SPEC = """local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage1 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  data: expc.data.synthetic(),
  global_batch_size:: 4,
  micro_batch_size:: 2,
  logging+: { wandb+: { tags: ['a', 'b'] } },
}
"""
SWEEP = """local expc = import 'expc.libsonnet';
expc.sweep.grid(import 'one.jsonnet', { lr: ['1e-3', '2e-3', '3e-3'] })
"""


@pytest.fixture
def one(project):
    (project / "specs" / "one.jsonnet").write_text(SPEC)
    (project / "specs" / "grid.jsonnet").write_text(SWEEP)
    return project / "specs" / "one.jsonnet"


def built(spec, *sets):
    return [m.data for m in compile_spec(spec, sets=sets)]


def failure(spec, *sets) -> str:
    with pytest.raises(ExpcError) as info:
        compile_spec(spec, sets=sets)
    return info.value.render()


def test_values_are_json_when_they_parse_else_strings():
    values = [o.value for o in parse_set(["a=12", "a=1e-3", "a=true", "a=null", "a=[1]", 'a={"k": 1}',
                                          "a=cpu", "a=", "a=x=y"])]
    assert values == [12, 1e-3, True, None, [1], {"k": 1}, "cpu", "", "x=y"]


def test_hydra_forms_are_parsed():
    ops = [(o.op, o.path) for o in parse_set(["a.b=1", "+a.c=2", "++a.d=3", "~a.e", "t[1]=x"])]
    assert ops == [("set", ("a", "b")), ("add", ("a", "c")), ("force", ("a", "d")), ("delete", ("a", "e")),
                   ("set", ("t", 1))]


def test_derived_values_follow_the_override(one):
    """The schedule's length and the warmup are computed from train.max_steps: they follow it."""
    plain, = built(one)
    longer, = built(one, "train.max_steps=2000")
    assert plain["deepspeed"]["scheduler"]["params"]["total_num_steps"] == 1000
    assert longer["train"]["max_steps"] == 2000
    assert longer["deepspeed"]["scheduler"]["params"]["total_num_steps"] == 2000
    assert longer["deepspeed"]["scheduler"]["params"]["warmup_num_steps"] == 100  # max_steps / 20


def test_hidden_knobs_are_reachable_and_stay_hidden(one):
    data, = built(one, "lr=1e-3", "micro_batch_size=1")
    assert data["deepspeed"]["optimizer"]["params"]["lr"] == 1e-3
    assert data["deepspeed"]["gradient_accumulation_steps"] == 2  # 4 / (1 x 2 processes)
    assert "lr" not in data and "micro_batch_size" not in data


def test_the_same_manifest_as_the_spec_saying_it(one, project):
    (project / "specs" / "said.jsonnet").write_text("(import 'one.jsonnet') + { lr:: 1e-3, train+: { max_steps: 60 } }")
    said, = compile_spec(project / "specs" / "said.jsonnet")
    over, = compile_spec(one, sets=["lr=1e-3", "train.max_steps=60"])
    assert said.digest == over.digest


def test_list_elements_and_whole_lists(one):
    data, = built(one, "logging.wandb.tags[1]=c")
    assert data["logging"]["wandb"]["tags"] == ["a", "c"]
    data, = built(one, 'logging.wandb.tags=["x", "y", "z"]')
    assert data["logging"]["wandb"]["tags"] == ["x", "y", "z"]


def test_a_list_of_the_wrong_type_blames_the_set(one):
    message = failure(one, "logging.wandb.tags=[1,106,107]")
    assert "$.logging.wandb.tags[0]" in message and "(set at --set logging.wandb.tags=[1,106,107])" in message
    assert message.count("(set at") == message.count("$.")  # every problem has its origin


def test_delete_hides_a_field(one):
    data, = built(one, "~deepspeed.gradient_clipping")
    assert "gradient_clipping" not in data["deepspeed"]
    data, = built(one, "~logging.wandb.tags[0]")
    assert data["logging"]["wandb"]["tags"] == ["b"]


def test_add_and_force(one):
    data, = built(one, "+deepspeed.wall_clock_breakdown=false")
    assert data["deepspeed"]["wall_clock_breakdown"] is False
    data, = built(one, "++train.max_steps=70", "++deepspeed.wall_clock_breakdown=false")
    assert data["train"]["max_steps"] == 70


def test_a_sweep_takes_the_patch_in_every_member(one, project):
    members = compile_spec(project / "specs" / "grid.jsonnet", sets=["train.max_steps=60"])
    assert len(members) == 3
    assert {m.data["deepspeed"]["scheduler"]["params"]["total_num_steps"] for m in members} == {60}


@pytest.mark.parametrize("item, message", [
    ("lrr=1e-3", '--set lrr=1e-3: no lrr in the experiment (did you mean "lr"?)'),
    ("modle.n_layer=3", '--set modle.n_layer=3: no modle in the experiment (did you mean "model"?)'),
    ("model.bias2=true", "--set model.bias2=true: no model.bias2 in the experiment (did you mean \"bias\"?)"),
    ("model.flash=true", "--set model.flash=true: no model.flash in the experiment; to add a new key write "
                         "--set +model.flash=true"),
    ("+train.max_steps=3", "--set +train.max_steps=3: train.max_steps already exists; drop the '+' to change "
                           "it (or write ++ to set it either way)"),
    ("~lr", "--set ~lr: lr is a knob (a hidden field), never in the manifest: set it instead of deleting it"),
    ("~train.nothing", "--set ~train.nothing: no train.nothing in the experiment to delete"),
    ("logging.wandb.tags[5]=x", "--set logging.wandb.tags[5]=x: index 5 is past the end of logging.wandb.tags "
                                "(length 2)"),
    ("logging.wandb.tags[5].x=1", "--set logging.wandb.tags[5].x=1: index 5 is past the end of "
                                  "logging.wandb.tags (length 2)"),
    ("model.n_layer.x=1", "--set model.n_layer.x=1: model.n_layer is a number, not an object"),
    ("model[0]=1", "--set model[0]=1: model is an object, not a list"),
])
def test_paths_that_do_not_fit(one, item, message):
    assert failure(one, item) == message


def test_a_path_mistake_is_one_problem_for_the_whole_sweep(one, project):
    assert failure(project / "specs" / "grid.jsonnet", "trian.max_steps=3") == (
        '--set trian.max_steps=3: no trian in the experiment (did you mean "train"?) (in 3 of 3 sweep members)')


def test_a_lib_rule_broken_by_a_set_names_the_set_first(one):
    assert failure(one, "micro_batch_size=3") == (
        "--set micro_batch_size=3: global batch 4 is not a multiple of micro batch 3 x world size 2 = 6\n"
        "  (raised at lib/batch.libsonnet:18:5)")


def test_knob_values_are_type_checked(one):
    assert failure(one, "lr=3e-4x") == '--set lr=3e-4x: knob lr: "3e-4x" is not of type "number"'


@pytest.mark.parametrize("item, message", [
    ("model.n_layer", "--set 'model.n_layer': expected path=value, e.g. model.n_layer=12 (or '~path' to delete)"),
    ("=3", "--set '=3': expected path=value, e.g. model.n_layer=12 (or '~path' to delete)"),
    ("model..n_layer=3", "--set 'model..n_layer=3': expected path=value, e.g. model.n_layer=12 (or '~path' to "
                         "delete)"),
    ("[0]=3", "--set '[0]=3': expected path=value, e.g. model.n_layer=12 (or '~path' to delete)"),
    ("~model.bias=true", "--set '~model.bias=true': a delete takes no value; write --set '~model.bias'"),
    ("model.dropout=NaN", "--set 'model.dropout=NaN': NaN is not a finite number"),
    ("model.dropout=-Infinity", "--set 'model.dropout=-Infinity': -Infinity is not a finite number"),
    # json.loads would turn these into inf, which the schema then reports as null
    ("model.dropout=1e400", "--set 'model.dropout=1e400': 1e400 is too large for a 64-bit float "
                            "(at most about 1.8e308)"),
    ("logging.wandb.tags=[1, -2E999]", "--set 'logging.wandb.tags=[1, -2E999]': -2E999 is too large for a "
                                       "64-bit float (at most about 1.8e308)"),
    ("logging.wandb.tags=[a, b]", "--set 'logging.wandb.tags=[a, b]': the value is not JSON; write it as JSON, "
                                  'e.g. ["a", "b"] (quote it for the shell)'),
    ("deepspeed.bf16={enabled: true}", "--set 'deepspeed.bf16={enabled: true}': the value is not JSON; write it "
                                       'as JSON, e.g. {"enabled": true} (quote it for the shell)'),
])
def test_malformed(item, message):
    with pytest.raises(ExpcError) as info:
        parse_set([item])
    assert info.value.render() == message


def test_largest_double_is_kept():
    assert parse_set(["model.dropout=1.7e308"])[0].value == 1.7e308


@pytest.mark.parametrize("item, message", [
    ("lr=1e400", "--tla 'lr=1e400': 1e400 is too large for a 64-bit float (at most about 1.8e308)"),
    ("lr=NaN", "--tla 'lr=NaN': NaN is not a finite number"),
    ("lrs=[3e-4, Infinity]", "--tla 'lrs=[3e-4, Infinity]': Infinity is not a finite number"),
])
def test_tla_values_must_be_finite(item, message):
    from expc.compile.evaluate import parse_tla

    with pytest.raises(ExpcError) as info:
        parse_tla([item])
    assert info.value.render() == message


# --- command-line sweeps -------------------------------------------------------------------------

def test_sweep_makes_a_grid_named_by_its_values(one):
    members = compile_spec(one, sweeps=["lr=1e-3,2e-3", "model=gpt_debug,gpt_cpu"])
    assert [m.name for m in members] == ["lr=1e-3,model=gpt_cpu", "lr=1e-3,model=gpt_debug",
                                         "lr=2e-3,model=gpt_cpu", "lr=2e-3,model=gpt_debug"]
    assert [(m.data["deepspeed"]["optimizer"]["params"]["lr"], m.data["model"]["n_layer"]) for m in members] == [
        (1e-3, 4), (1e-3, 2), (2e-3, 4), (2e-3, 2)]
    # Each member is recorded as the spec with its point's --sets, which rebuild it exactly.
    again, = compile_spec(one, sets=members[1].set)
    assert members[1].member is None and members[1].set == ["lr=1e-3", "model=gpt_debug"]
    assert again.digest == members[1].digest


def test_sweep_combines_with_a_sweep_spec_and_a_range(one, project):
    members = compile_spec(project / "specs" / "grid.jsonnet", sweeps=["train.max_steps=range(20,60,20)"])
    assert [m.name for m in members] == [f"lr={lr},train.max_steps={n}" for lr in ("1e-3", "2e-3", "3e-3")
                                         for n in (20, 40)]
    assert {m.member for m in members} == {"lr=1e-3", "lr=2e-3", "lr=3e-3"}
    assert [m.data["deepspeed"]["scheduler"]["params"]["total_num_steps"] for m in members] == [20, 40] * 3


def test_a_section_takes_a_preset_by_name(one):
    data, = built(one, "model=gpt_cpu")
    assert data["model"]["n_layer"] == 4
    assert failure(one, "model=gpt_dbug").startswith(
        '--set model=gpt_dbug: unknown model preset "gpt_dbug" (did you mean "gpt_debug"?)')


@pytest.mark.parametrize("sweep, message", [
    ("lrr=1,2", '--sweep lrr=1,2: no lrr in the experiment (did you mean "lr"?)'),
    ("lr=1e-3,1e-3", "--sweep 'lr=1e-3,1e-3': a value is given twice"),
    ("lr", "--sweep 'lr': expected path=value,value,..., e.g. lr=1e-4,3e-4 or train.max_steps=range(100,400,100)"),
    ("train.max_steps=range(5,1)", "--sweep 'train.max_steps=range(5,1)': the range has 0 values "
                                   "(1 to 100000 are allowed)"),
    # found by tests/test_fuzz.py: finite bounds whose count is not (an OverflowError before)
    ("lr=range(0,1e80,1e-230)", "--sweep 'lr=range(0,1e80,1e-230)': the range has more than 100000 values "
                                "(1 to 100000 are allowed)"),
    ("train.max_steps=range(a,b)", "--sweep 'train.max_steps=range(a,b)': expected range(start, stop) or "
                                   "range(start, stop, step), with numbers and a step that is not 0"),
    # found by tests/test_fuzz.py: each range within its bound, their grid ten billion members,
    # which took the machine's memory to list
    (["lr=range(0,100000)", "seed=range(0,100000)"],
     "--sweep: the grid has 10,000,000,000 members (100,000 lr x 100,000 seed); at most 100,000 are allowed"),
])
def test_sweep_mistakes(one, sweep, message):
    with pytest.raises(ExpcError) as info:
        compile_spec(one, sweeps=sweep if isinstance(sweep, list) else [sweep])
    assert info.value.render() == message


def test_values_with_commas_inside_brackets_stay_whole(one):
    members = compile_spec(one, sweeps=['logging.wandb.tags=["a","b"],["c"]'])
    assert sorted(m.data["logging"]["wandb"]["tags"] for m in members) == [["a", "b"], ["c"]]


def test_a_sweep_pins_its_shared_corpus_once(one, project, monkeypatch):
    """Members share their data section: its files are hashed (or looked up) once per build,
    which keeps a 1000-member sweep's build near a second, not a minute."""
    import expc.pins

    calls = []
    real = expc.pins.corpus_digest
    monkeypatch.setattr(expc.pins, "corpus_digest", lambda *a, **k: calls.append(1) or real(*a, **k))
    (project / "specs" / "text.jsonnet").write_text(
        "local expc = import 'expc.libsonnet';\n"
        "expc.sweep.grid((import 'one.jsonnet') + { data: expc.data.stdlib(max_files=5) }, { seed: [1, 2, 3] })")
    members = compile_spec(project / "specs" / "text.jsonnet")
    assert len(members) == 3 and len({m.data["data"]["sha256"] for m in members}) == 1
    assert len(calls) == 1
