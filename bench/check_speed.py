"""How long `expc check` takes on a generated project of N specs (default 100), built first.

    .venv/bin/python bench/check_speed.py [N]

Each generated spec is a small variation of specs/tiny.jsonnet (learning rate, layer count,
ZeRO stage) so that every spec compiles to its own manifest. Prints the wall time of
`expc check` in a fresh process (what CI pays) and of check() in a warm one.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = """local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage{stage} + expc.presets.quick_test + {{
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_cpu {{ n_layer: {layers} }},
  global_batch_size:: 16,
  micro_batch_size:: 8,
  lr:: {lr},
}}
"""


def main(count: int) -> None:
    from expc.review.check import check
    from expc.compile import build
    from expc.project import Project

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copytree(ROOT / "lib", root / "lib")
        (root / "specs").mkdir()
        for i in range(count):
            spec = SPEC.format(stage=i % 3, layers=1 + i % 8, lr=f"{1 + i}e-4")
            (root / "specs" / f"exp_{i:03d}.jsonnet").write_text(spec)
        project = Project(root)
        build(project.spec_files(), project=project)

        start = time.perf_counter()
        out = subprocess.run([str(Path(sys.executable).parent / "expc"), "check"], cwd=root,
                             capture_output=True, text=True)
        cold = time.perf_counter() - start
        assert out.returncode == 0, out.stdout + out.stderr

        start = time.perf_counter()
        report = check(project)
        warm = time.perf_counter() - start
        assert not report.findings
        print(f"expc check, {count} specs, {report.manifests} manifests: "
              f"{cold:.2f} s in a fresh process, {warm:.2f} s warm")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
