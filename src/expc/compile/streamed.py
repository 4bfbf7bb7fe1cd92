"""A streamed sweep's members compiled a top-level field at a time (pipeline._compile_streamed).

The members of a big sweep share most of their fields: in a grid over `seed` they differ in one.
The stream hands each member's document over as minified JSON (evaluate.HAND_OVER), which is
cut into its top-level fields' texts (`"model":{...}`), and each distinct field text is pinned,
validated alone (validate.field_is_valid), canonicalized and written out as JSON text once; a
member is then its fields' results put together. The rules across fields are the required
fields, checked for each member, and validate.semantic_problems, run once for each distinct set
of the fields it reads (validate.SEMANTIC_FIELDS). The bytes and digest are those of the member
compiled whole (tests/test_big_sweeps.py). A member that any stage finds a problem in is None:
the caller compiles the sweep the usual way, which reports it.
"""
from __future__ import annotations

import hashlib
import json
import json.scanner
from json.decoder import scanstring as _scan_string
from typing import NamedTuple

from expc.errors import ExpcError
from expc.project import Project

from . import canonical, validate
from .pin import pin

# Distinct fields kept at most: a sweep over a knob brings a new line or two with every member;
# past this the memo starts again, and the shared fields are compiled once more (every 1,000
# members or so: nothing to measure; at 20,000 a zip over max_steps held 75 MB of them).
MAX_FIELDS = 2_000


class Field(NamedTuple):
    key: str
    pinned: object  # as validated (the rules across fields read it)
    data: object  # as stored: floats rounded
    texts: tuple[str, str]  # canonical.field_texts


class Member(NamedTuple):
    keys: tuple[str, ...]
    data: dict
    digest: str
    body: str  # the manifest file's text


class Fields:
    def __init__(self, project: Project, pinned: dict, fit_check: bool):
        self.project, self.pinned, self.fit_check = project, pinned, fit_check
        self.memo: dict[str, Field | None] = {}  # a field's text -> what it compiled to
        self.semantic: dict[tuple, bool] = {}  # the lines of validate.SEMANTIC_FIELDS -> no problems
        self.scan = json.scanner.make_scanner(json.JSONDecoder())  # (text, where) -> (value, end)

    def member(self, document: bytes) -> Member | None:
        try:
            cut = self._cut(document.decode("utf-8"))
        except (StopIteration, ValueError, IndexError):  # not minified JSON: a bug
            cut = None
        if cut is None:  # not an object, or not JSON: the usual path says what is wrong
            return None
        fields, lines = [], []
        for line, key, value in cut:
            field = self.memo.get(line, _UNSEEN)
            if field is _UNSEEN:
                if len(self.memo) >= MAX_FIELDS:
                    self.memo.clear()
                field = self.memo[line] = self._compile(key, value)
            if field is None:
                return None
            fields.append(field)
            lines.append(line)
        keys = tuple(f.key for f in fields)
        if not validate.has_required_fields(keys):
            return None
        # the rules across fields see only validate.SEMANTIC_FIELDS: members alike in those agree
        shown = tuple(line for line, f in zip(lines, fields) if f.key in validate.SEMANTIC_FIELDS)
        if shown not in self.semantic:
            if len(self.semantic) >= MAX_FIELDS:
                self.semantic.clear()
            self.semantic[shown] = not validate.semantic_problems({f.key: f.pinned for f in fields}, self.fit_check)
        if not self.semantic[shown]:
            return None
        hashed, body = canonical.document_texts({f.key: f.texts for f in fields})
        return Member(keys, {f.key: f.data for f in fields}, hashlib.sha256(hashed).hexdigest(), body)

    def _cut(self, text: str) -> list[tuple[str, str, object]] | None:
        """Minified JSON of an object -> (its text, key, value) for each top-level field, by the
        json module's own scanner (in C): finding where a value ends means reading it, and the
        value read is kept for a field not seen before. None for what is not an object."""
        if not text.startswith("{"):
            return None
        cut, at = [], 1
        if text[at] == "}":
            return cut
        while True:
            key, colon = _scan_string(text, at + 1)
            value, end = self.scan(text, colon + 1)
            cut.append((text[at:end], key, value))
            if text[end] == "}":
                return cut
            at = end + 1  # past the comma

    def _compile(self, key: str, value) -> Field | None:
        try:
            pinned = pin({key: value}, self.project, self.pinned)[key]  # pin reads one field at a time
            if not validate.field_is_valid(key, pinned):
                return None
            data = canonical.canonicalize(pinned)
        except ExpcError:
            return None
        return Field(key, pinned, data, canonical.field_texts(key, data))


_UNSEEN = object()
