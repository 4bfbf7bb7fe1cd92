"""Stage 6, canonicalize: a validated document -> canonical bytes and their digest.

The canonical bytes are RFC 8785 (JCS) of the parsed document after every float is rounded to 15
significant digits (engines differ in the last bit of `std.exp`/`std.log`; the stored value is
the rounded one). The digest is the sha256 hex of those bytes. Engine text is never hashed.

A manifest file holds a pretty form of the same data (sorted keys, 2-space indent, numbers
written as JCS writes them, newline at end) so that diffs read well; its digest is the digest of
the JCS form of its parsed body. This module is imported by the trainer too: keep it light.
"""
from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path

import rfc8785

from expc.errors import ExpcError, Problem, json_path

MAX_SAFE_INTEGER = 2**53 - 1
SIGNIFICANT_DIGITS = 15


def canonicalize(document):
    """Round floats, reject numbers JSON cannot carry exactly; report every bad number at once."""
    problems: list[Problem] = []

    def walk(value, path):
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:  # a lone surrogate, from "\ud800" in JSON text
                    problems.append(Problem(f"the string {value!r} holds a lone surrogate, which is not text "
                                            "(UTF-8 cannot hold it)", json_path(path)))
            return value
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            if abs(value) > MAX_SAFE_INTEGER:
                problems.append(Problem(f"integer {value} is beyond +-(2^53-1) and cannot be "
                                        "represented exactly", json_path(path)))
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                problems.append(Problem(f"{value} is not a finite number", json_path(path)))
                return value
            rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
            if not math.isfinite(rounded):  # within 5e292 of the largest double, rounding up overflows
                problems.append(Problem(f"{value!r} is too large to store: rounded to {SIGNIFICANT_DIGITS} significant "
                                        "digits it is beyond the largest 64-bit float (about 1.79769313486231e308)",
                                        json_path(path)))
            return rounded
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        raise TypeError(f"not JSON data: {type(value).__name__}")  # a bug, not a user mistake

    out = walk(document, ())
    if problems:
        raise ExpcError(problems)
    return out


def canonical_bytes(manifest) -> bytes:
    """RFC 8785 (JCS) bytes: no whitespace, keys sorted by UTF-16 code units, JCS number text.

    Number text comes from the `rfc8785` package (ECMAScript number formatting, the hard part);
    strings from `json`, whose escaping with ensure_ascii=False is the one RFC 8785 prescribes.
    Composing them here is ~4x faster than rfc8785.dumps on whole manifests, which matters for
    large sweeps; tests/test_canonical.py holds the two to the same bytes.
    """
    parts: list[str] = []
    _jcs(manifest, parts.append)
    return "".join(parts).encode("utf-8")


def _jcs(value, emit) -> None:
    if isinstance(value, dict):
        emit("{")
        for i, key in enumerate(sorted(value, key=_utf16)):
            emit(("," if i else "") + _string(key) + ":")
            _jcs(value[key], emit)
        emit("}")
    elif isinstance(value, list):
        emit("[")
        for i, item in enumerate(value):
            if i:
                emit(",")
            _jcs(item, emit)
        emit("]")
    else:
        emit(_scalar(value))


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be")


# json's C string encoder, the one json.dumps(ensure_ascii=False) uses, without its per-call setup.
_string = json.encoder.encode_basestring


def _scalar(value) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(value)
    return _float_text(value)


@lru_cache(maxsize=4096)
def _float_text(value: float) -> str:
    return rfc8785.dumps(value).decode("ascii")


def digest(manifest) -> str:
    """sha256 hex of the canonical bytes."""
    return hashlib.sha256(canonical_bytes(manifest)).hexdigest()


def pretty(manifest) -> str:
    """The file body: sorted keys, 2-space indent, JCS number text, one newline at the end."""
    return _pretty(manifest, "") + "\n"


def _pretty(value, indent: str) -> str:
    inner = indent + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{_string(k)}: {_pretty(value[k], inner)}" for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + _pretty(v, inner) for v in value) + "\n" + indent + "]"
    return _scalar(value)


def field_texts(key: str, value) -> tuple[str, str]:
    """One top-level field of a manifest as document_texts joins it: its JCS text (`"key":value`)
    and its pretty text (`  "key": value`, one level in)."""
    parts: list[str] = [_string(key), ":"]
    _jcs(value, parts.append)
    return "".join(parts), f"  {_string(key)}: {_pretty(value, '  ')}"


def document_texts(fields: dict[str, tuple[str, str]]) -> tuple[bytes, str]:
    """A manifest's canonical bytes and its file body, from its top-level fields' field_texts: the
    same as canonical_bytes and pretty of the whole, without walking what the fields hold again
    (a big sweep's members share most of theirs)."""
    if not fields:
        return b"{}", "{}\n"
    canonical = "{" + ",".join(fields[k][0] for k in sorted(fields, key=_utf16)) + "}"
    return canonical.encode("utf-8"), "{\n" + ",\n".join(fields[k][1] for k in sorted(fields)) + "\n}\n"


def parse_manifest_text(text: str, where: str):
    """Parse a manifest body; refuse NaN/Infinity that Python's json would otherwise accept, a
    number too big for a double (1e400 would read as infinity), a key given twice (a reader of
    the file would see the first, the digest covers the last) and nesting too deep to read."""
    def refuse(token):
        raise ExpcError(f"{token} is not valid JSON", where)

    def finite(token):
        value = float(token)
        if not math.isfinite(value):
            raise ExpcError(f"{token} is too large for a 64-bit float", where)
        return value

    def unique(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise ExpcError(f"key {key!r} appears twice in one object", where)
            seen[key] = value
        return seen

    try:
        return json.loads(text, parse_constant=refuse, parse_float=finite, object_pairs_hook=unique)
    except RecursionError:
        raise ExpcError("not a manifest: nested too deep to read", where) from None
    except ValueError as err:
        raise ExpcError(f"not valid JSON: {err}", where) from None


def load_manifest(path: Path | str):
    """Read a manifest file and check that its content hashes to its name; return (data, digest).

    Both `expc run` and every trainer rank call this before doing anything else.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExpcError(f"no such manifest: {path}") from None
    except UnicodeDecodeError as err:
        raise ExpcError(f"not a manifest: byte {err.start} is not UTF-8", str(path)) from None
    except OSError as err:
        raise ExpcError(f"cannot read the manifest: {err.strerror or err}", str(path)) from None
    data = parse_manifest_text(text, str(path))
    # What is returned is the parse of the hashed bytes, not of the file: `10.0` hashes as `10`
    # (one JSON number), so an edit to `10.0` must not hand a reader a float the build never made.
    try:
        hashed = canonical_bytes(data)
    except UnicodeEncodeError:
        raise ExpcError("not a manifest: a string holds a lone surrogate (such as \\ud800), which is not text",
                        str(path)) from None
    actual = hashlib.sha256(hashed).hexdigest()
    data = json.loads(hashed)
    if path.stem != actual:
        raise ExpcError(
            f"content does not match its name: the file hashes to {actual[:12]}, its name says "
            f"{path.stem[:12]}. A manifest is never edited by hand: change the spec and rebuild.",
            str(path))
    return data, actual
