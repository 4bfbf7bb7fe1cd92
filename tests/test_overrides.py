"""overrides: `--set path=value` parsing and application; errors name the path."""
import pytest

from expc.errors import ExpcError
from expc.compile.overrides import apply_overrides, parse_set

DOC = {"model": {"n_layer": 2, "dropout": 0.0}, "logging": {"wandb": {"tags": ["a", "b"]}}}


def applied(*items):
    return apply_overrides(DOC, parse_set(items))


def test_values_are_json_when_they_parse_else_strings():
    assert [v for _, v, _ in parse_set(["a=12", "a=1e-3", "a=true", "a=null", "a=[1]", "a={\"k\": 1}",
                                        "a=cpu", "a=", "a=x=y"])] == [12, 1e-3, True, None, [1], {"k": 1},
                                                                     "cpu", "", "x=y"]


def test_paths_with_indexes():
    assert parse_set(["logging.wandb.tags[1]=c"])[0][0] == ("logging", "wandb", "tags", 1)
    assert applied("logging.wandb.tags[1]=c")["logging"]["wandb"]["tags"] == ["a", "c"]


def test_applies_in_order_on_a_copy():
    out = applied("model.n_layer=3", "model.n_layer=4", "model.bias=false")
    assert out["model"] == {"n_layer": 4, "dropout": 0.0, "bias": False}  # a new key: the schema judges it
    assert DOC["model"]["n_layer"] == 2


@pytest.mark.parametrize("item, message", [
    ("model.n_layer", "--set 'model.n_layer': expected path=value, e.g. model.n_layer=12"),
    ("=3", "--set '=3': expected path=value, e.g. model.n_layer=12"),
    ("model..n_layer=3", "--set 'model..n_layer=3': expected path=value, e.g. model.n_layer=12"),
    ("[0]=3", "--set '[0]=3': expected path=value, e.g. model.n_layer=12"),
    ("model.dropout=NaN", "--set 'model.dropout=NaN': NaN is not a finite number"),
    ("model.dropout=-Infinity", "--set 'model.dropout=-Infinity': -Infinity is not a finite number"),
    # json.loads would turn these into inf, which the schema then reports as null
    ("model.dropout=1e400", "--set 'model.dropout=1e400': 1e400 is too large for a 64-bit float "
                            "(at most about 1.8e308)"),
    ("logging.wandb.tags=[1, -2E999]", "--set 'logging.wandb.tags=[1, -2E999]': -2E999 is too large for a "
                                       "64-bit float (at most about 1.8e308)"),
])
def test_malformed(item, message):
    with pytest.raises(ExpcError) as info:
        parse_set([item])
    assert info.value.render() == message


@pytest.mark.parametrize("item, message", [
    ("modle.n_layer=3", '--set modle.n_layer=3: no modle in the document (did you mean "model"?)'),
    ("logging.wandb.tags[5]=x", "--set logging.wandb.tags[5]=x: index 5 is past the end of "
                                "logging.wandb.tags (length 2)"),
    ("logging.wandb.tags[5].x=1", "--set logging.wandb.tags[5].x=1: index 5 is past the end of "
                                  "logging.wandb.tags (length 2)"),
    ("model.n_layer.x=1", "--set model.n_layer.x=1: model.n_layer is a number, not an object"),
    ("model[0]=1", "--set model[0]=1: model is an object, not a list"),
    ("model.dropout[0].x=1", "--set model.dropout[0].x=1: model.dropout is a number, not a list"),
])
def test_paths_that_do_not_fit_the_document(item, message):
    with pytest.raises(ExpcError) as info:
        applied(item)
    assert info.value.render() == message


def test_largest_double_is_kept():
    assert parse_set(["model.dropout=1.7e308"])[0][1] == 1.7e308


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
