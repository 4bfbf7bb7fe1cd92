"""The layout: one subpackage per pipeline stage, imports running one way.

    api                          the package itself (expc.build, load, run) and api.py   (top)
    cli, listing                 the command line
    review, launch               read manifests, start runs
    trainer (the loop)           train.py, __main__.py
    trainer (its parts)          models/, data/, rundir, tracking, ranks, agreement
    compile                      spec -> document -> manifest -> files
    ground                       errors, project, estimate, fit, schema, archs, pins, examples  (bottom)

The package `expc` is at the top, not the bottom: its `__init__` hands out the API lazily (every
stage below it imports `expc.<module>`, never the package's names).

A module may import its own stage or any stage below it, never one above, and the modules form no
cycle. Every import counts, also the ones inside functions (that is where the heavy and the
upward ones would hide).
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from .conftest import ROOT

SRC = ROOT / "src"

# (stage, rank, module-name prefixes); a module belongs to the stage with its longest prefix.
STAGES = [
    ("ground", 0, ["expc.errors", "expc.project", "expc.estimate", "expc.schema", "expc.archs",
                   "expc.pins", "expc.examples", "expc.fit", "expc.axes"]),
    ("compile", 1, ["expc.compile"]),
    ("trainer parts", 2, ["trainer", "trainer.models", "trainer.data", "trainer.rundir", "trainer.tracking",
                          "trainer.ranks", "trainer.agreement"]),
    ("trainer loop", 3, ["trainer.train", "trainer.__main__"]),
    ("review", 4, ["expc.review"]),
    ("launch", 4, ["expc.launch"]),
    ("cli", 5, ["expc.cli", "expc.listing", "expc.__main__"]),
    ("api", 6, ["expc", "expc.api"]),
]
STAGE_PACKAGES = ["expc.compile", "expc.review", "expc.launch", "expc.schema", "expc.archs", "trainer.models",
                  "trainer.data"]


def stage_of(module: str) -> tuple[str, int]:
    best = max(((prefix, name, rank) for name, rank, prefixes in STAGES for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), key=lambda t: len(t[0]), default=None)
    assert best, f"{module} belongs to no stage: add it to STAGES in tests/test_layout.py"
    return best[1], best[2]


def module_files() -> dict[str, Path]:
    files = {}
    for top in ("expc", "trainer"):
        for path in sorted((SRC / top).rglob("*.py")):
            parts = list(path.relative_to(SRC).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file)."""
    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import submodule` imports the submodule; `from mod import name` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in files and t != module)
        graph[module] = edges
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every upward import (a module importing a stage above its own) and every cycle."""
    found = []
    for module, targets in sorted(graph.items()):
        name, rank = stage_of(module)
        for target in sorted(targets):
            target_name, target_rank = stage_of(target)
            if target_name != name and target_rank >= rank:
                found.append(f"{module} ({name}) imports {target} ({target_name}): a stage may import "
                             "only itself and the stages below it")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), each as a closed path."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [group + [group[0]] for group in groups]


def test_imports_run_one_way_without_cycles():
    problems = violations(import_graph(module_files()))
    assert not problems, "\n".join(problems)


def test_every_module_belongs_to_a_stage():
    for module in module_files():
        stage_of(module)


def test_the_checker_catches_an_upward_import_and_a_cycle():
    graph = {
        "expc.compile.validate": {"expc.review.diff"},  # compile reaching up into review
        "expc.review.diff": {"expc.review.render"},
        "expc.review.render": {"expc.review.diff"},  # a cycle inside one stage
        "trainer.models.gpt": {"trainer.train"},  # a model family importing the loop
        "expc.launch.run": {"trainer.rundir", "expc.compile.canonical"},  # allowed: both below
    }
    assert violations(graph) == [
        "expc.compile.validate (compile) imports expc.review.diff (review): a stage may import only itself "
        "and the stages below it",
        "trainer.models.gpt (trainer parts) imports trainer.train (trainer loop): a stage may import only "
        "itself and the stages below it",
        "import cycle: expc.review.diff -> expc.review.render -> expc.review.diff",
    ]


def test_review_and_launch_do_not_import_each_other():
    graph = {"expc.review.diff": {"expc.launch.run"}}
    assert violations(graph) == ["expc.review.diff (review) imports expc.launch.run (launch): a stage may "
                                 "import only itself and the stages below it"]


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_each_stage_package_says_what_it_does_and_may_import(package):
    doc = (importlib.import_module(package).__doc__ or "").strip()
    assert doc, f"{package}/__init__.py has no docstring"
    assert "May import" in doc, f"{package}'s docstring does not say what it may import"
