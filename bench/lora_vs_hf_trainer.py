"""expc's LoRA fine-tune step rate vs the Hugging Face Trainer on the same run (target: >= 1.2x).

    .venv/bin/python bench/lora_vs_hf_trainer.py [--steps 110] [--repeats 3] [--quick]

One manifest, compiled from finetune_lora's shape: the committed base assets/tiny-llama with
LoRA (adapters.standard: r 16 on the attention projections), the committed instruction rows
with the plain template, ZeRO stage 2 on cpu_laptop (2 CPU ranks, 1 thread each), micro-batch
4 x accumulation 2 = global batch 16, DeepSpeed's AdamW and WarmupCosineLR. Both sides start
through the real `deepspeed` launcher with the same environment (the one `expc run --dry-run`
plans): expc exactly as planned; the Trainer as `deepspeed --num_gpus 2 bench/hf_trainer_lora.py`,
which trains the same base, LoraConfig, examples and padding with `transformers.Trainer` and
the manifest's `deepspeed` section verbatim as its DeepSpeed config.

Steps/s is measured over training windows of --window steps (the log interval), the first
dropped as warm-up: for expc from the `elapsed` of consecutive loss lines in metrics.jsonl, for
the Trainer from perf_counter at on_step_end of the same steps; a run's figure is its median
window. Launches alternate (expc first in odd runs, the Trainer first in even ones) so machine
load hits both alike. Prints one line per launch, then medians and their ratio, and as a check
that both train the same thing: the trainable parameter counts (must be equal) and the final
logged train losses (data order differs, so close but not equal; expc logs the loss of the
last step, the Trainer the mean over the last window).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TARGET = 1.2
SPEC = """local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage2 + {{
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.hf('assets/tiny-llama'),
  adapter: expc.adapters.standard,
  data: expc.data.jsonl('assets/instructions/train.jsonl', val='assets/instructions/val.jsonl',
                        template=expc.templates.plain, max_length=64),
  global_batch_size:: 16,
  micro_batch_size:: 4,
  lr:: 1e-2,
  warmup_steps:: 5,
  logging+: {{ wandb+: {{ mode: 'disabled' }} }},
  train+: {{ max_steps: {steps}, log_interval: {window}, eval_interval: 100000, eval_iters: 1,
             checkpoint_interval: 100000, keep_checkpoints: 1, sample_tokens: 0 }},
}}
"""


def window_rates(times: dict[int, float], window: int, steps: int) -> list[float]:
    """Steps/s of each window ending at 2 window, 3 window, ..., steps (the first is warm-up)."""
    ends = sorted({s for s in range(window, steps + 1, window)} | {steps})
    return [(b - a) / (times[b] - times[a]) for a, b in pairwise(ends)]


def launch(argv: list, project: Path, env: dict, log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run([str(a) for a in argv], cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False)
    if proc.returncode:
        sys.exit(f"launch failed (exit {proc.returncode}): {' '.join(map(str, argv))}\n"
                 + "".join(log.read_text().splitlines(keepends=True)[-40:]))
    return time.perf_counter() - start


def run_expc(plan, project: Path, env: dict, window: int, steps: int) -> dict:
    shutil.rmtree(plan.run_dir, ignore_errors=True)
    wall = launch(plan.argv, project, env, project / "expc.log")
    lines = [json.loads(line) for line in (plan.run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [line for line in lines if "loss" in line]
    metadata = json.loads((plan.run_dir / "metadata.json").read_text())
    return {"rates": window_rates({line["step"]: line["elapsed"] for line in train}, window, steps),
            "loss": train[-1]["loss"], "trainable": metadata["trainable_params"], "wall": wall}


def run_hf(manifest: Path, project: Path, env: dict, procs: int, port: int, window: int, steps: int) -> dict:
    out = project / "hf_result.json"
    out.unlink(missing_ok=True)
    wall = launch([BIN / "deepspeed", "--num_gpus", procs, "--master_port", port, BENCH / "hf_trainer_lora.py",
                   manifest, "--out", out], project, env, project / "hf.log")
    result = json.loads(out.read_text())
    if result["threads"] != 1 or result["zero_stage"] != 2 or result["world_size"] != procs:
        sys.exit(f"the Trainer ran with {result['threads']} threads, ZeRO {result['zero_stage']}, "
                 f"world {result['world_size']}: not the manifest's set-up")
    return {"rates": window_rates(dict(result["step_times"]), window, steps), "loss": result["losses"][-1][1],
            "trainable": result["trainable_params"], "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=110, help="optimizer steps per launch (default 110)")
    parser.add_argument("--window", type=int, default=10, help="steps per measured window (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="launches per side (default 3)")
    parser.add_argument("--quick", action="store_true", help="40 steps, 1 repeat")
    parser.add_argument("--port", type=int, default=29650, help="master port (the Trainer uses the next one)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 40, 1
    if args.steps < 3 * args.window:
        parser.error("--steps must be at least 3 windows (the first is dropped)")
    from expc.compile import build
    from expc.launch.commands import LaunchOptions, plan_launch

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copytree(ROOT / "lib", project / "lib")
        shutil.copytree(ROOT / "assets", project / "assets")
        (project / "specs").mkdir()
        spec = project / "specs" / "lora_rate.jsonnet"
        spec.write_text(SPEC.format(steps=args.steps, window=args.window))
        (built,) = build([spec])
        manifest = project / "manifests" / f"{built.digest}.json"
        plan = plan_launch(built.data, LaunchOptions(manifest, project / "runs" / built.digest, BIN, args.port))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}, **plan.env}
        ds, procs = built.data["deepspeed"], plan.world_size
        print(f"tiny-llama + LoRA r{built.data['adapter']['r']} {'/'.join(built.data['adapter']['target_modules'])}, "
              f"ZeRO {ds['zero_optimization']['stage']}, {procs} CPU ranks x {env['OMP_NUM_THREADS']} thread, "
              f"micro {ds['train_micro_batch_size_per_gpu']} x accumulation {ds['gradient_accumulation_steps']} "
              f"= global {ds['train_batch_size']}; {args.steps} steps a launch, median of {args.window}-step windows "
              "after the first", flush=True)
        results = {"expc": [], "hf": []}
        sides = {"expc": lambda: run_expc(plan, project, env, args.window, args.steps),
                 "hf": lambda: run_hf(manifest, project, env, procs, args.port + 1, args.window, args.steps)}
        for repeat in range(args.repeats):
            for side in (("expc", "hf") if repeat % 2 == 0 else ("hf", "expc")):
                r = sides[side]()
                r["rate"] = statistics.median(r["rates"])
                results[side].append(r)
                name = "expc      " if side == "expc" else "HF Trainer"
                print(f"run {repeat + 1}: {name} {r['rate']:6.2f} steps/s  (windows {min(r['rates']):.1f}-"
                      f"{max(r['rates']):.1f}; final train loss {r['loss']:.4f}, "
                      f"{r['trainable']:,} trainable parameters, launch {r['wall']:.1f} s)", flush=True)
    expc, hf = (statistics.median(r["rate"] for r in results[side]) for side in ("expc", "hf"))
    ratio = expc / hf
    trainable = {side: sorted({r["trainable"] for r in results[side]}) for side in results}
    losses = {side: [r["loss"] for r in results[side]] for side in results}
    print(f"trainable parameters: expc {', '.join(f'{n:,}' for n in trainable['expc'])}, HF Trainer "
          f"{', '.join(f'{n:,}' for n in trainable['hf'])} ({'equal' if trainable['expc'] == trainable['hf'] else 'DIFFERENT'})")
    print(f"final train loss: expc {min(losses['expc']):.4f}-{max(losses['expc']):.4f}, HF Trainer "
          f"{min(losses['hf']):.4f}-{max(losses['hf']):.4f}")
    print(f"median: expc {expc:.2f} steps/s, HF Trainer {hf:.2f} steps/s, ratio {ratio:.3f} "
          f"(target >= {TARGET}: {'met' if ratio >= TARGET else 'not met'}); {time.perf_counter() - began:.0f} s in all")


if __name__ == "__main__":
    main()
