"""A big sweep is evaluated a chunk of members at a time (pipeline.CHUNK_MEMBERS): the same
manifests, names and imports as in one evaluation, and the same error messages. Here chunks of
5 members stand in for chunks of thousands; bench/big_sweeps.py measures the real sizes."""
from __future__ import annotations

import pytest

from expc.compile import compile_spec, pipeline
from expc.errors import ExpcError
from expc.project import Project

SWEEP = """local expc = import 'expc.libsonnet';
local one = import 'one.jsonnet';
expc.sweep.grid(one(), %s)
"""


def compiled(proj, spec: str, chunk: int, monkeypatch):
    monkeypatch.setattr(pipeline, "CHUNK_MEMBERS", chunk)
    try:
        return [(m.name, m.digest, m.imports) for m in compile_spec(proj / spec, Project(proj))]
    except ExpcError as err:
        return err.render()


def test_chunks_give_the_manifests_of_one_evaluation(proj, monkeypatch):
    (proj / "specs" / "grid.jsonnet").write_text(SWEEP % "{ seed: std.range(1, 12) }")
    whole = compiled(proj, "specs/grid.jsonnet", 1000, monkeypatch)
    assert len(whole) == 12
    assert compiled(proj, "specs/grid.jsonnet", 5, monkeypatch) == whole


@pytest.mark.parametrize("axes", [
    "{ seed: std.range(1, 6), micro_batch_size: [1, 3] }",  # a lib assert in half the members
    "{ seed: std.range(1, 6), lr: [1e-3, true] }",  # a knob of the wrong type
    "{ seed: std.range(1, 6), 'train.max_steps': [10, -1] }",  # a schema error
], ids=["lib-assert", "knob", "schema"])
def test_chunks_report_errors_as_one_evaluation_does(proj, monkeypatch, axes):
    (proj / "specs" / "grid.jsonnet").write_text(SWEEP % axes)
    whole = compiled(proj, "specs/grid.jsonnet", 1000, monkeypatch)
    assert isinstance(whole, str) and "of 12 sweep members" in whole
    assert compiled(proj, "specs/grid.jsonnet", 5, monkeypatch) == whole
