"""canonical: 15-digit rounding, RFC 8785 bytes, the 2^53 bounds, digests, the pretty file body."""
import json
import math
import random
from pathlib import Path

import pytest
import rfc8785

from expc.compile import canonical
from expc.errors import ExpcError

ROOT = Path(__file__).resolve().parent.parent


def test_floats_round_to_15_significant_digits():
    assert canonical.canonicalize({"x": 0.1 + 0.2}) == {"x": 0.3}
    assert canonical.canonicalize([math.e, 1 / 3]) == [2.71828182845905, 0.333333333333333]
    assert canonical.canonicalize({"n": 7, "b": True, "s": "0.1", "z": None}) == {"n": 7, "b": True, "s": "0.1", "z": None}


def test_3e_4_hashes_the_same_whatever_the_engine_text():
    # go-jsonnet prints 3e-4 as 0.00029999999999999997; another engine may print 0.0003.
    texts = ['{"lr": 3e-4}', '{"lr": 0.00029999999999999997}', '{"lr": 0.0003}', '{"lr": 0.00030000000000000003}']
    digests = {canonical.digest(canonical.canonicalize(json.loads(t))) for t in texts}
    assert len(digests) == 1
    assert canonical.canonical_bytes(canonical.canonicalize(json.loads(texts[1]))) == b'{"lr":0.0003}'


def test_integer_bounds():
    safe = 2**53 - 1
    assert canonical.canonicalize([safe, -safe]) == [safe, -safe]
    with pytest.raises(ExpcError) as info:
        canonical.canonicalize({"a": [1, 2**53], "b": -(2**53) - 1})
    assert [(p.location, p.message) for p in info.value.problems] == [
        ("$.a[1]", "integer 9007199254740992 is beyond +-(2^53-1) and cannot be represented exactly"),
        ("$.b", "integer -9007199254740993 is beyond +-(2^53-1) and cannot be represented exactly"),
    ]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ExpcError) as info:
        canonical.canonicalize({"x": value})
    assert info.value.problems[0].location == "$.x"
    assert "is not a finite number" in info.value.problems[0].message


def test_rfc8785_example_values():
    # RFC 8785 section 3.2.2's example: number text, string escapes, literals, key order.
    data = json.loads('{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],'
                      r'"string":"\u20ac$\u000F\u000aA\u0027\u0042\u0022\u005c\\\"\/",'
                      '"literals":[null,true,false]}')
    expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
                '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical.canonical_bytes(data) == expected.encode("utf-8")


def test_keys_sort_by_utf16_code_units():
    # RFC 8785 section 3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33.
    data = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    keys = list(json.loads(canonical.canonical_bytes(data)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def random_document(rng, depth=0):
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([True, False, None])
    if kind == 1:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, rng.uniform(-1e6, 1e6),
                           rng.random() * 10 ** rng.randint(-30, 30)])
    if kind in (3, 4):
        return "".join(rng.choice(["a", "\u00e9", "\n", "\x01", "\"", "\\", "/", "\u2028", "\U0001f600", "\x7f"])
                       for _ in range(rng.randrange(6)))
    if kind in (5, 6):
        key = lambda: "".join(rng.choice("ab\u00e9\U0001f600\ufb33_") for _ in range(rng.randrange(1, 5)))
        return {key(): random_document(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [random_document(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_same_bytes_as_the_rfc8785_package():
    rng = random.Random(8785)
    documents = [random_document(rng) for _ in range(2000)]
    documents += [json.loads(p.read_text()) for p in (ROOT / "manifests").glob("*.json")]
    for document in documents:
        assert canonical.canonical_bytes(document) == rfc8785.dumps(document), document


def test_a_document_put_together_from_its_fields_is_the_document_whole():
    # a streamed sweep's member is written from its top-level fields' texts (compile/streamed.py)
    rng = random.Random(1785)
    documents = [d for d in (random_document(rng) for _ in range(3000)) if isinstance(d, dict)]
    documents += [json.loads(p.read_text()) for p in (ROOT / "manifests").glob("*.json")] + [{}]
    assert len(documents) > 500
    for document in documents:
        fields = {k: canonical.field_texts(k, v) for k, v in document.items()}
        assert canonical.document_texts(fields) == (canonical.canonical_bytes(document), canonical.pretty(document))


def test_pretty_form_and_its_digest(tmp_path):
    data = canonical.canonicalize({"b": [1, 2.5, {"y": "é", "x": None}], "a": {}, "c": []})
    text = canonical.pretty(data)
    assert text == ('{\n  "a": {},\n  "b": [\n    1,\n    2.5,\n    {\n      "x": null,\n      "y": "é"\n'
                    '    }\n  ],\n  "c": []\n}\n')
    path = tmp_path / f"{canonical.digest(data)}.json"
    path.write_text(text, encoding="utf-8")
    assert canonical.load_manifest(path) == (data, path.stem)


def test_load_manifest_refuses_an_edited_file(tmp_path):
    data = {"a": 1}
    path = tmp_path / f"{canonical.digest(data)}.json"
    path.write_text(canonical.pretty({"a": 2}), encoding="utf-8")
    with pytest.raises(ExpcError) as info:
        canonical.load_manifest(path)
    assert info.value.problems[0].message.startswith("content does not match its name: the file hashes to ")


def test_manifest_text_refuses_nan():
    with pytest.raises(ExpcError) as info:
        canonical.parse_manifest_text('{"a": NaN}', "m.json")
    assert info.value.render() == "m.json: NaN is not valid JSON"
