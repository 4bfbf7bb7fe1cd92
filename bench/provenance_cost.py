"""What provenance costs: `expc build`'s success path with and without the origin hook (it must
not differ), one `expc explain` of a leaf, and explaining every leaf of specs/tiny.jsonnet.

    .venv/bin/python bench/provenance_cost.py
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def per_call(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from expc.compile import pipeline as compiler
    from expc.review.explain import explain_target
    from expc.project import Project

    project = Project(ROOT)
    specs = project.spec_files()

    def compile_all():
        for spec in specs:
            compiler.compile_spec(spec, project)

    hook = compiler._origin
    with_hook, without_hook = [], []
    for _ in range(20):  # interleaved, so machine load hits both alike
        with_hook.append(per_call(compile_all, 1))
        compiler._origin = lambda *args: None
        try:
            without_hook.append(per_call(compile_all, 1))
        finally:
            compiler._origin = hook
    print(f"compile {len(specs)} specs: {statistics.median(with_hook) * 1000:.1f} ms with the origin "
          f"hook, {statistics.median(without_hook) * 1000:.1f} ms without (median of 20, interleaved)")

    tiny = str(ROOT / "specs" / "tiny.jsonnet")
    one = per_call(lambda: explain_target(tiny, "deepspeed.optimizer.params.lr"), 5)
    start = time.perf_counter()
    leaves = explain_target(tiny, None)
    every = time.perf_counter() - start
    print(f"explain one leaf: {one * 1000:.0f} ms; every leaf ({len(leaves)}): {every:.2f} s")


if __name__ == "__main__":
    main()
