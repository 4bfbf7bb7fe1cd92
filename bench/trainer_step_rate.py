"""Trainer step rate vs a bare PyTorch loop on the same model and batch (target: >= 0.9x).

    .venv/bin/python bench/trainer_step_rate.py [--steps 60] [--repeats 3]

Both train specs/tiny.jsonnet's model (gpt_cpu, 0.8M parameters, block 128) on the stdlib
corpus with micro-batch 8, AdamW (torch's), clipping at 1.0, 1 thread, in ONE process, so the
figure isolates what the trainer adds per step: the DeepSpeed engine (ZeRO 0), the per-step
all-reduce of loss and stop vote, batch construction, logging. The trainer's rate is its own
`tokens_per_s` from metrics.jsonl (training time only, first window dropped as warm-up); the
bare loop is timed the same way. Runs alternate so that load from other processes on the
machine hits both alike. Prints one line per run and the ratio of medians.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SPEC = """local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage0 + {{
  hardware: expc.hardware.cpu_laptop {{ procs_per_node: 1 }},
  model: expc.models.gpt_cpu,
  global_batch_size:: 8,
  micro_batch_size:: 8,
  lr:: 2e-3,
  logging+: {{ wandb+: {{ mode: 'disabled' }} }},
  train+: {{ max_steps: {steps}, log_interval: {window}, eval_interval: 100000, eval_iters: 1,
             checkpoint_interval: 100000, keep_checkpoints: 1, sample_tokens: 0 }},
}}
"""


def trainer_rate(project: Path, manifest: Path, window: int, port: int) -> float:
    run_dir = project / "runs" / manifest.stem
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    subprocess.run([BIN / "deepspeed", "--num_gpus", "1", "--master_port", str(port), "--module", "trainer",
                    manifest], cwd=project, env=env, check=True, capture_output=True)
    rates = [json.loads(line)["tokens_per_s"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    return statistics.median(rates[1:])


def bare_rate(manifest: dict, steps: int, window: int) -> float:
    """The same model, batches, optimizer and clipping, in a plain loop with no DeepSpeed."""
    import torch

    from trainer.data import TRAIN, get_batch, load_corpus
    from trainer.models import build_model

    torch.set_num_threads(1)
    m, params = manifest["model"], manifest["deepspeed"]["optimizer"]["params"]
    corpus = load_corpus(manifest["data"], manifest["seed"], m["vocab_size"], m["block_size"])
    torch.manual_seed(manifest["seed"])
    model = build_model(manifest)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], betas=params["betas"], eps=params["eps"],
                                  weight_decay=params["weight_decay"])
    micro = manifest["deepspeed"]["train_micro_batch_size_per_gpu"]
    rates, start = [], time.perf_counter()
    for step in range(steps):
        x, y = get_batch(corpus.train, TRAIN, manifest["seed"], step, 0, 0, micro, m["block_size"], "cpu")
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        if (step + 1) % window == 0:
            now = time.perf_counter()
            rates.append(micro * m["block_size"] * window / (now - start))
            start = now
    return statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=29590)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    from expc.compile import build

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copytree(ROOT / "lib", project / "lib")
        (project / "specs").mkdir()
        spec = project / "specs" / "rate.jsonnet"
        spec.write_text(SPEC.format(steps=args.steps, window=args.window))
        (built,) = build([spec])
        manifest = project / "manifests" / f"{built.digest}.json"
        trainer, bare = [], []
        for repeat in range(args.repeats):
            trainer.append(trainer_rate(project, manifest, args.window, args.port))
            bare.append(bare_rate(built.data, args.steps, args.window))
            print(f"repeat {repeat + 1}: trainer {trainer[-1]:.0f} tokens/s, bare loop {bare[-1]:.0f} tokens/s",
                  flush=True)
    ratio = statistics.median(trainer) / statistics.median(bare)
    print(f"median: trainer {statistics.median(trainer):.0f} tokens/s, bare loop {statistics.median(bare):.0f} "
          f"tokens/s, ratio {ratio:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
