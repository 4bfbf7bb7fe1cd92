"""Model FLOPs utilisation of a ~350M GPT in bf16 on one GPU, through `expc run` (target: >= 45%).

    .venv/bin/python bench/gpu_mfu.py [--steps 40] [--micro-batch 16] [--stage 1] [--no-fused]
    .venv/bin/python bench/gpu_mfu.py --dry-run      # build the manifest, print the launch, run nothing

The lib's gpt_350m (24 layers, width 1024, context 1024, vocab 50304) on the lib's one-GPU H100
profile, with the device's own name, memory and dense bf16 peak filled in (an H200 and an H100
SXM have 989 TFLOP/s, an H100 PCIe 756; the lib's h100_80gb_x1 profile is the PCIe card), ZeRO 1,
synthetic data (no input pipeline to wait for), W&B off. `fused: true` reaches
torch.optim.AdamW through DeepSpeed's `torch_adam` (one kernel per step for the whole update).

`mfu` in metrics.jsonl is flops_per_token * tokens/s / peak over each logging window of training
steps (evaluation and checkpoints excluded). The first window holds the warm-up (allocator,
kernel selection) and is left out; the median of the others is the figure.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET = 0.45
# Dense bf16 TFLOP/s by what torch.cuda.get_device_name() says (first match wins).
PEAKS = [("H200", 989), ("H100 PCIe", 756), ("H100", 989), ("A100", 312)]

SPEC = """local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage({stage}) + {{
  hardware: expc.hardware.h100_80gb_x1 {{ device: '{device}', device_memory_gib: {memory}, peak_tflops: {peak} }},
  model: expc.models.gpt_350m {{ dropout: 0.0 }},
  data: {{ source: 'synthetic', val_fraction: 0.1 }},
  global_batch_size:: {micro},
  micro_batch_size:: {micro},
  logging+: {{ wandb+: {{ mode: 'disabled' }} }},
  deepspeed+: {{ optimizer+: {{ params+: {{ fused: {fused} }} }} }},
  train+: {{ max_steps: {steps}, log_interval: 5, eval_interval: 100000, eval_iters: 1,
            checkpoint_interval: 100000, keep_checkpoints: 1, sample_tokens: 0 }},
}}
"""


def device_profile(args) -> tuple[str, int, float]:
    """(device name, memory GiB, peak TFLOP/s) of GPU 0, or placeholders for --dry-run."""
    if args.dry_run and args.peak_tflops:
        return "dry-run", 80, args.peak_tflops
    import torch

    if not torch.cuda.is_available():
        if args.dry_run:
            return "no-cuda", 80, 989.0
        raise SystemExit("no CUDA device: this benchmark needs one GPU (--dry-run builds the manifest only)")
    name = torch.cuda.get_device_name(0)
    memory = torch.cuda.get_device_properties(0).total_memory // 2**30
    peak = args.peak_tflops or next((tflops for key, tflops in PEAKS if key in name), None)
    if peak is None:
        raise SystemExit(f"unknown dense bf16 peak for {name!r}: pass --peak-tflops")
    return name.replace("'", ""), memory, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--micro-batch", type=int, default=16, help="sequences of 1024 tokens per step")
    parser.add_argument("--stage", type=int, choices=(0, 1), default=1, help="ZeRO stage")
    parser.add_argument("--no-fused", action="store_true", help="torch.optim.AdamW's default (foreach) update")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the table")
    parser.add_argument("--port", type=int, default=29590)
    parser.add_argument("--keep", help="copy the run folder here afterwards")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    from expc.compile import build

    device, memory, peak = device_profile(args)
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copytree(ROOT / "lib", project / "lib")
        (project / "specs").mkdir()
        spec = project / "specs" / "mfu.jsonnet"
        spec.write_text(SPEC.format(stage=args.stage, device=device, memory=memory, peak=peak, micro=args.micro_batch,
                                    fused="false" if args.no_fused else "true", steps=args.steps))
        (manifest,) = build([spec])
        path = project / "manifests" / f"{manifest.digest}.json"
        command = [str(BIN / "expc"), "run", str(path), "--master-port", str(args.port)]
        if args.dry_run:
            print(json.dumps({k: manifest.data[k] for k in ("hardware", "model")}, indent=1))
            print(json.dumps(manifest.data["deepspeed"], indent=1))
            subprocess.run(command + ["--dry-run"], cwd=project, check=True)
            return 0
        done = subprocess.run(command, cwd=project)
        run_dir = project / "runs" / manifest.digest
        if args.keep:
            shutil.copytree(run_dir, args.keep, ignore=shutil.ignore_patterns("checkpoints"), dirs_exist_ok=True)
        if done.returncode != 0:
            print(f"expc run failed (exit {done.returncode})", file=sys.stderr)
            return done.returncode
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        windows = [r for r in records if "mfu" in r]
    measured = windows[1:] or windows
    mfu = statistics.median(r["mfu"] for r in measured)
    tokens = statistics.median(r["tokens_per_s"] for r in measured)
    print(f"{device}, peak {peak:g} TFLOP/s, gpt_350m bf16, ZeRO {args.stage}, micro-batch {args.micro_batch} x 1024, "
          f"{'torch AdamW foreach' if args.no_fused else 'torch AdamW fused'}")
    print(f"windows: {[round(r['mfu'], 3) for r in windows]}")
    print(f"median mfu {mfu:.1%} ({tokens:,.0f} tokens/s) vs target {TARGET:.0%}: "
          f"{'meets' if mfu >= TARGET else 'below'} target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
