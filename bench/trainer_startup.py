"""`expc run` start-to-first-step vs the plain `deepspeed` launch it plans (target: <= +1 s).

    .venv/bin/python bench/trainer_startup.py [--repeats 3]

A debug-size GPT on synthetic data, 2 CPU ranks, logging every step. Each launch starts on an
empty run directory; the clock runs from starting the process to the first training line in
metrics.jsonl (step 1), which includes interpreter start, imports, process-group set-up, model
and engine. Then the launch is left to finish. `expc run` adds its own start-up (click, manifest
check, plan, lock) on top of the same `deepspeed` command; the difference of medians is that
overhead. Launches alternate so that machine load hits both alike.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SPEC = """local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  data: { source: 'synthetic', val_fraction: 0.1 },
  global_batch_size:: 4,
  micro_batch_size:: 2,
  train+: { max_steps: 3, log_interval: 1, eval_interval: 100, eval_iters: 1,
            checkpoint_interval: 100, keep_checkpoints: 1, sample_tokens: 0 },
}
"""


def time_to_first_step(command: list, cwd: Path, env: dict, metrics: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in command], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while not (metrics.is_file() and '"loss"' in metrics.read_text()):
        if proc.poll() is not None:
            raise SystemExit(f"launch ended (exit {proc.returncode}) before its first step: {command}")
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    proc.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=29591)
    args = parser.parse_args()
    from expc.compile import build
    from expc.launch.commands import LaunchOptions, plan_launch

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copytree(ROOT / "lib", project / "lib")
        (project / "specs").mkdir()
        (project / "specs" / "startup.jsonnet").write_text(SPEC)
        (built,) = build([project / "specs" / "startup.jsonnet"])
        manifest = project / "manifests" / f"{built.digest}.json"
        run_dir = project / "runs" / built.digest
        plan = plan_launch(built.data, LaunchOptions(manifest, run_dir, BIN, args.port))
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        plain, expc = [], []
        for repeat in range(args.repeats):
            shutil.rmtree(run_dir, ignore_errors=True)
            plain.append(time_to_first_step(plan.argv, project, {**env, **plan.env}, run_dir / "metrics.jsonl"))
            shutil.rmtree(run_dir, ignore_errors=True)
            expc.append(time_to_first_step([BIN / "expc", "run", manifest, "--master-port", args.port], project, env,
                                           run_dir / "metrics.jsonl"))
            print(f"repeat {repeat + 1}: deepspeed {plain[-1]:.2f} s, expc run {expc[-1]:.2f} s", flush=True)
    print(f"median start-to-first-step: deepspeed {statistics.median(plain):.2f} s, expc run "
          f"{statistics.median(expc):.2f} s, overhead {statistics.median(expc) - statistics.median(plain):+.2f} s "
          "(target <= +1 s)")


if __name__ == "__main__":
    main()
