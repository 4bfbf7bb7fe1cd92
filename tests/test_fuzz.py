"""Fuzzing with hypothesis: the canonicalizer, the manifest loader and verifier, the `--set` /
`--tla` / `--sweep` parsers and the hostfile parser.

Every parser of user input must end in a result or an ExpcError, never another exception; the
canonical form must survive its own parse with the same digest. Each property runs twice: a fast
slice here (FAST examples), and 10,000 examples behind the `slow` marker:

    pytest -m slow tests/test_fuzz.py

docs/reliability.md has the figures of the last 10k run and what it found.
"""
import json
import math
import random
import re
from pathlib import Path

import pytest
import rfc8785
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from expc.compile import canonical
from expc.compile.evaluate import parse_tla
from expc.compile.overrides import grid, parse_set, parse_sweep
from expc.compile.validate import check_loaded
from expc.errors import ExpcError
from expc.launch.hosts import read_hostfile
from expc.pins import check

from .conftest import leaves

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "manifests").glob("*.json"))
MANIFESTS = [m for m in MANIFESTS if m.name != "index.json"]

_COMMON = {"deadline": None, "derandomize": False, "database": None,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                     HealthCheck.data_too_large]}
FAST = settings(max_examples=100, **_COMMON)
SLOW = settings(max_examples=10_000, **_COMMON)


def fuzzed(strategy, prop):
    """(the fast test, the 10k test) of one property over one strategy."""
    def fast(value):
        prop(value)

    def soak(value):
        prop(value)
    return FAST(given(strategy)(fast)), pytest.mark.slow(SLOW(given(strategy)(soak)))


# ---- JSON values as a manifest may hold them -------------------------------------------------

SAFE_INT = st.integers(-canonical.MAX_SAFE_INTEGER, canonical.MAX_SAFE_INTEGER)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.one_of(st.none(), st.booleans(), SAFE_INT, FLOATS, st.text())
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                     st.dictionaries(st.text(), inner, max_size=5)),
                    max_leaves=40)


def reordered(value, rng: random.Random):
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: reordered(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [reordered(v, rng) for v in value]
    return value


def same_json(a, b) -> bool:
    """Equal as JSON values: numbers compared as doubles (RFC 8785 writes the double 5.1e16 as
    51000000000000000, which Python reads back as an int of the same value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


def too_large(value) -> bool:
    """Holds a float that rounds (15 digits) past the largest double: refused, with its path."""
    if isinstance(value, dict):
        return any(too_large(v) for v in value.values())
    if isinstance(value, list):
        return any(too_large(v) for v in value)
    return isinstance(value, float) and not math.isfinite(float(f"{value:.15g}"))


def canonical_round_trip(case):
    value, seed = case
    if too_large(value):
        with pytest.raises(ExpcError, match="beyond the largest 64-bit float"):
            canonical.canonicalize(value)
        return
    c = canonical.canonicalize(value)
    data = canonical.canonical_bytes(c)
    assert data == rfc8785.dumps(c)
    parsed = json.loads(data)
    assert same_json(parsed, c)
    # What every reader does: parse the file (canonical or pretty) and hash it again.
    assert canonical.digest(parsed) == canonical.digest(c)
    assert canonical.digest(canonical.parse_manifest_text(canonical.pretty(c), "x")) == canonical.digest(c)
    # Key order and whitespace of the text do not reach the digest.
    rng = random.Random(seed)
    text = json.dumps(reordered(c, rng), indent=rng.choice([None, 0, 1, 4, "\t"]), ensure_ascii=rng.random() < 0.5,
                      separators=rng.choice([None, (",", ":"), (" ,  ", " :\n ")]))
    assert canonical.digest(json.loads(text)) == canonical.digest(c)


test_canonical_round_trip, test_canonical_round_trip_10k = fuzzed(
    st.tuples(JSON, st.integers(0, 2**32)), canonical_round_trip)


def fifteen_digits(f):
    """The 15-significant-digit rule (docs/compiler.md): the stored value is float(f"{x:.15g}"),
    and rounding again changes nothing, so a rebuild of a stored value keeps its digest."""
    if too_large(f):
        with pytest.raises(ExpcError, match="beyond the largest 64-bit float"):
            canonical.canonicalize(f)
        return
    stored = canonical.canonicalize(f)
    assert stored == float(f"{f:.15g}")
    assert canonical.canonicalize(stored) == stored
    assert float(json.loads(canonical.canonical_bytes(stored))) == stored
    # Whatever text an engine printed for f (shortest, 17 digits), the digest is the same.
    assert canonical.digest(canonical.canonicalize(float(f"{f:.17g}"))) == canonical.digest(stored)


test_fifteen_digit_rounding, test_fifteen_digit_rounding_10k = fuzzed(FLOATS, fifteen_digits)


def fifteen_digit_decimals(case):
    """A decimal of at most 15 significant digits is stored as written, whatever its exponent
    (subnormals excepted: they hold fewer digits)."""
    mantissa, exponent = case
    text = f"{mantissa}e{exponent}"
    f = float(text)
    assume(math.isfinite(f) and (f == 0 or abs(f) >= 2.2250738585072014e-308))
    assert canonical.canonicalize(f) == f
    assert float(f"{canonical.canonicalize(f):.15g}") == float(text)


test_fifteen_digit_decimals, test_fifteen_digit_decimals_10k = fuzzed(
    st.tuples(st.integers(-(10**15 - 1), 10**15 - 1), st.integers(-320, 310)), fifteen_digit_decimals)


# ---- the manifest loader and verifier ----------------------------------------------------------

def mutated(data, path, how, replacement):
    data = json.loads(json.dumps(data))
    *head, last = path
    parent = data
    for part in head:
        parent = parent[part]
    if how == "replace":
        parent[last] = replacement
    elif how == "delete":
        del parent[last]
    elif how == "rename" and isinstance(parent, dict):
        parent[f"{last}_"] = parent.pop(last)
    return data


MUTATION = st.tuples(st.sampled_from(MANIFESTS), st.integers(0, 10**9),
                     st.sampled_from(["replace", "delete", "rename"]), JSON,
                     st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255), st.booleans()), max_size=4))


def loader_and_verifier(case, tmp_path):
    """A committed manifest with a field or a few bytes changed: the loader refuses it under its
    old name; under its new digest it loads, and the run's input verification ends in an
    ExpcError or a pass, never another exception."""
    manifest, pick, how, replacement, edits = case
    original = manifest.read_bytes()
    data = json.loads(original)
    paths = [p for p, _ in leaves(data) if p]
    body = canonical.pretty(mutated(data, paths[pick % len(paths)], how, replacement))
    raw = bytearray(body.encode("utf-8"))
    for position, byte, insert in edits:  # byte edits on top: any bytes at all, invalid UTF-8 included
        at = position % (len(raw) + 1)
        if insert or at == len(raw):
            raw[at:at] = bytes([byte])
        else:
            raw[at] = byte
    target = tmp_path / manifest.name
    target.write_bytes(bytes(raw))
    try:
        loaded, digest = canonical.load_manifest(target)
    except ExpcError:
        loaded = None
    if loaded is not None:
        assert bytes(raw) == original or canonical.digest(json.loads(original)) == digest
        return
    try:
        loaded = canonical.parse_manifest_text(bytes(raw).decode("utf-8"), "x")
        renamed = tmp_path / f"{canonical.digest(loaded)}.json"
    except (ExpcError, UnicodeDecodeError, ValueError):
        return  # not JSON (or not UTF-8): the loader's refusal above is the whole story
    renamed.write_bytes(bytes(raw))
    try:  # what `expc run` and every trainer rank do with it
        loaded, _ = canonical.load_manifest(renamed)
        check_loaded(loaded, str(renamed))
        check(loaded, ROOT)
    except ExpcError:
        pass


@FAST
@given(case=MUTATION)
def test_manifest_loader_and_verifier(case, tmp_path):
    loader_and_verifier(case, tmp_path)


@pytest.mark.slow
@SLOW
@given(case=MUTATION)
def test_manifest_loader_and_verifier_10k(case, tmp_path):
    loader_and_verifier(case, tmp_path)


# ---- command-line parsers ----------------------------------------------------------------------

PATH_TEXT = st.one_of(st.text(max_size=12), st.from_regex(r"[+~]{0,2}[a-z_]{1,6}(\.[a-z_]{1,6}|\[[0-9]{1,3}\]){0,3}",
                                                          fullmatch=True))
NUMBER_TEXT = st.one_of(FLOATS.map(repr), st.integers().map(str), st.sampled_from(
    ["1e400", "-1e400", "inf", "nan", "NaN", "Infinity", "1e-400", "0x10", "1_000", "٣", "²", "1" * 5000,
     "\"\\ud800\"", "[\"\\udfff\"]"]))
VALUE_TEXT = st.one_of(st.text(max_size=20), NUMBER_TEXT, JSON.map(json.dumps),
                       st.integers(1, 5000).map(lambda n: "[" * n),
                       st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
                       st.tuples(NUMBER_TEXT, NUMBER_TEXT, NUMBER_TEXT).map(lambda t: f"range({t[0]},{t[1]},{t[2]})"),
                       st.tuples(NUMBER_TEXT, NUMBER_TEXT).map(lambda t: f"range({t[0]}, {t[1]})"),
                       st.lists(NUMBER_TEXT, max_size=4).map(",".join))
ITEM = st.one_of(st.text(), st.tuples(PATH_TEXT, VALUE_TEXT).map("=".join))


def command_line(items):
    """--set, --sweep and --tla over the same items: a result or an ExpcError, nothing else."""
    for parse in (parse_set, lambda i: grid(parse_sweep(i)), parse_tla):
        try:
            parse(items)
        except ExpcError:
            pass


test_command_line_parsers, test_command_line_parsers_10k = fuzzed(st.lists(ITEM, max_size=4), command_line)

# ---- the lib's reading of sweep values -----------------------------------------------------------

JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
SWEEP_STRINGS = st.lists(st.one_of(st.text(alphabet="0123456789.eE+-", max_size=8),
                                   st.text(alphabet="0123456789.eE+-x ,=", max_size=6), FLOATS.map(repr)),
                         min_size=1, max_size=40, unique=True)


def sweep_values(strings):
    """expc.sweep.grid reads a string value as a number exactly where JSON does, and as that
    number; any other string stays as written. (A JSON number beyond a double, '1e999', is
    go-jsonnet's own error, left out.)"""
    import _gojsonnet

    strings = [s for s in strings if not (JSON_NUMBER.fullmatch(s) and math.isinf(float(s)))]
    assume(strings)
    code = (f"local g = (import 'sweep.libsonnet').grid({{}}, {{ v: {json.dumps(strings)} }});\n"
            f"[g['v=' + s].v for s in {json.dumps(strings)}]")
    values = json.loads(_gojsonnet.evaluate_snippet("fuzz", code, jpathdir=[str(ROOT / "lib")]))
    for written, value in zip(strings, values):
        if JSON_NUMBER.fullmatch(written):
            assert not isinstance(value, str) and value == float(written), written
        else:
            assert value == written


test_sweep_values, test_sweep_values_10k = fuzzed(SWEEP_STRINGS, sweep_values)

HOST_LINE = st.one_of(
    st.text(max_size=30),
    st.tuples(st.from_regex(r"[A-Za-z0-9_.:\[\]-]{1,12}", fullmatch=True), st.one_of(NUMBER_TEXT, st.text(max_size=4)),
              st.sampled_from(["", " ", "  # note", "\t"])).map(lambda t: f"{t[0]} slots={t[1]}{t[2]}"))
HOSTFILE = st.one_of(st.binary(max_size=200), st.lists(HOST_LINE, max_size=6).map(lambda ls: "\n".join(ls).encode(
    "utf-8", "surrogatepass")))


def hostfile(case):
    data, tmp = case
    path = tmp / "hostfile"
    path.write_bytes(data)
    try:
        read_hostfile(path)
    except ExpcError:
        pass


@FAST
@given(data=HOSTFILE)
def test_hostfile_parser(data, tmp_path):
    hostfile((data, tmp_path))


@pytest.mark.slow
@SLOW
@given(data=HOSTFILE)
def test_hostfile_parser_10k(data, tmp_path):
    hostfile((data, tmp_path))
