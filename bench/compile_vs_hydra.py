"""`expc build` against Hydra on the same experiment, whole processes, paired, medians.

    .venv/bin/pip install -e ".[bench]"        # hydra-core
    .venv/bin/python bench/compile_vs_hydra.py [--repeats 10] [--sweep-repeats 3]

Three comparisons, each pair run alternately so that machine load hits both alike:

1. One experiment: `expc build specs/large.jsonnet` (the 1.3B model on 4 nodes x 8 H100,
   ZeRO-3) in a fresh copy of the project, manifests/ emptied before each build so the write
   is paid too, against `python app.py --cfg job --resolve` on a Hydra config tree with the
   same groups (hardware, model, zero, optim, schedule, preset, deepspeed) and the same derived values
   (gradient accumulation, schedule length) as interpolations with resolvers.
2. A 1000-member sweep (10 learning rates x 10 warmups x 10 seeds of the laptop experiment):
   `expc build` of one grid spec (1000 manifests written) against Hydra composing the same
   1000 configurations. Hydra is measured two ways: `--multirun` with its basic launcher (what
   a user types; every job gets its output folder and config snapshot, like expc's files),
   and the Compose API in one process (no job folders: Hydra's cheapest path, a lower bound).
3. `expc --help`, the cost of the CLI's start-up.

Targets (issue 2): one spec <= 0.15 s and <= 0.2x Hydra; the 1000 sweep <= 2 s and <= 0.02x
Hydra; `expc --help` <= 0.1 s. The script reports; it asserts nothing about time.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# The sweep as a spec: the laptop experiment of specs/sweep_lr.jsonnet, 10 x 10 x 10.
SWEEP_SPEC = """local expc = import 'expc.libsonnet';
local base = expc.experiment + expc.zero.stage2 + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_cpu,
  global_batch_size:: 16,
  micro_batch_size:: 8,
};
expc.sweep.grid(base, {
  lr: ['1e-4', '2e-4', '3e-4', '4e-4', '5e-4', '6e-4', '7e-4', '8e-4', '9e-4', '1e-3'],
  warmup_steps: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
})
"""
LRS = ["1e-4", "2e-4", "3e-4", "4e-4", "5e-4", "6e-4", "7e-4", "8e-4", "9e-4", "1e-3"]
WARMUPS = [str(i) for i in range(1, 11)]
SEEDS = [str(i) for i in range(1, 11)]

# The Hydra side: config groups holding the same values as the lib's tables, the derived
# values as interpolations. `preset` is the experiment preset (quick_test / full_training).
HYDRA_FILES = {
    "config.yaml": """defaults:
  - hardware: h100_80gb_nodes
  - model: gpt_1_3b
  - zero: stage3
  - optim: adamw
  - schedule: warmup_cosine
  - preset: full_training
  - deepspeed: base
  - _self_

schema: expc/manifest/v1
seed: 1337
global_batch_size: 1024
micro_batch_size: 4
lr: 2.0e-4
warmup_steps: 1000
data: {source: tokens, path: data/openwebtext, dtype: uint16, val_fraction: 0.05}
launch: {threads_per_process: 8, env: {}}
logging: {wandb: {mode: offline, project: expc, tags: [large, gpt_1_3b, zero3]}}
""",
    "laptop.yaml": """defaults:
  - hardware: cpu_laptop
  - model: gpt_cpu
  - zero: stage2
  - optim: adamw
  - schedule: warmup_cosine
  - preset: quick_test
  - deepspeed: base
  - _self_

schema: expc/manifest/v1
seed: 1337
global_batch_size: 16
micro_batch_size: 8
lr: 3.0e-4
warmup_steps: 2
data: {source: stdlib, val_fraction: 0.1}
launch: {threads_per_process: 1, env: {}}
logging: {wandb: {mode: offline, project: expc, tags: []}}
""",
    "deepspeed/base.yaml": """train_batch_size: ${global_batch_size}
train_micro_batch_size_per_gpu: ${micro_batch_size}
gradient_accumulation_steps: ${accumulation:${global_batch_size},${micro_batch_size},${hardware.nodes},${hardware.procs_per_node}}
gradient_clipping: 1.0
steps_per_print: 1000000
bf16: {enabled: '${hardware.bf16}'}
zero_optimization: ${zero}
optimizer: ${optim}
scheduler: ${schedule}
""",
    "hardware/h100_80gb_nodes.yaml": """name: h100_80gb_x8_n4
accelerator: cuda
backend: nccl
nodes: 4
procs_per_node: 8
device: H100-80GB
device_memory_gib: 80
bf16: true
fp16: true
interconnect: nvlink+infiniband
peak_tflops: 989
""",
    "hardware/cpu_laptop.yaml": """name: cpu_laptop
accelerator: cpu
backend: gloo
nodes: 1
procs_per_node: 2
device: cpu
device_memory_gib: 8
bf16: false
fp16: false
interconnect: loopback
peak_tflops: 0.1
""",
    "model/gpt_1_3b.yaml": "{arch: gpt, n_layer: 24, n_head: 32, n_embd: 2048, block_size: 1024, "
                           "vocab_size: 50304, dropout: 0.0, bias: false}\n",
    "model/gpt_cpu.yaml": "{arch: gpt, n_layer: 4, n_head: 4, n_embd: 128, block_size: 128, "
                          "vocab_size: 256, dropout: 0.0, bias: false}\n",
    "zero/stage2.yaml": "{stage: 2, overlap_comm: true, contiguous_gradients: true}\n",
    "zero/stage3.yaml": "{stage: 3, overlap_comm: true, contiguous_gradients: true}\n",
    "optim/adamw.yaml": """type: AdamW
params: {lr: '${lr}', betas: [0.9, 0.95], eps: 1.0e-8, weight_decay: 0.1, torch_adam: true}
""",
    "schedule/warmup_cosine.yaml": """type: WarmupCosineLR
params: {total_num_steps: '${train.max_steps}', warmup_num_steps: '${warmup_steps}',
         warmup_min_ratio: 0.0, cos_min_ratio: 0.1}
""",
    "preset/full_training.yaml": """# @package _global_
train: {max_steps: 100000, log_interval: 50, eval_interval: 1000, eval_iters: 50,
        checkpoint_interval: 1000, keep_checkpoints: 3, sample_tokens: 0}
""",
    "preset/quick_test.yaml": """# @package _global_
train: {max_steps: 50, log_interval: 5, eval_interval: 25, eval_iters: 4,
        checkpoint_interval: 25, keep_checkpoints: 1, sample_tokens: 0}
""",
}

# The Hydra application: resolve the whole config (expc computes every derived value too) and,
# in a multirun, write it as JSON in the job's folder, as expc writes each manifest.
HYDRA_APP = """import json, sys
import hydra
from omegaconf import OmegaConf

OmegaConf.register_new_resolver(
    "accumulation", lambda g, m, n, p: g // (m * n * p), replace=True)

@hydra.main(config_path="conf", config_name=sys.argv.pop(1), version_base=None)
def main(cfg):
    with open("config.json", "w") as f:
        json.dump(OmegaConf.to_container(cfg, resolve=True), f, sort_keys=True)

if __name__ == "__main__":
    main()
"""

HYDRA_COMPOSE = """import json, sys, time
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

OmegaConf.register_new_resolver(
    "accumulation", lambda g, m, n, p: g // (m * n * p), replace=True)
lrs, warmups, seeds = sys.argv[2].split(","), sys.argv[3].split(","), sys.argv[4].split(",")
start = time.perf_counter()
with initialize_config_dir(config_dir=sys.argv[1], version_base=None):
    n = 0
    for lr in lrs:
        for warmup in warmups:
            for seed in seeds:
                cfg = compose("laptop", overrides=[f"lr={lr}", f"warmup_steps={warmup}", f"seed={seed}"])
                json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True)
                n += 1
print(n, time.perf_counter() - start)
"""


def timed(command: list, cwd: Path, before=None) -> float:
    if before:
        before()
    start = time.perf_counter()
    out = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{out.stdout}{out.stderr}")
    return seconds


def paired(repeats: int, a, b) -> tuple[list, list]:
    """Alternate a and b, `repeats` times each, after one untimed warm-up of each."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(a())
        times_b.append(b())
    return times_a, times_b


def describe(times: list) -> str:
    return f"median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}, n={len(times)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="pairs for the one-spec and --help timings")
    parser.add_argument("--sweep-repeats", type=int, default=3, help="pairs for the 1000-member sweep")
    args = parser.parse_args()
    try:
        import hydra  # noqa: F401
    except ImportError:
        sys.exit('hydra-core is not installed: .venv/bin/pip install -e ".[bench]"')

    expc, python = str(BIN / "expc"), sys.executable
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        project = work / "project"
        shutil.copytree(ROOT / "lib", project / "lib")
        (project / "specs").mkdir()
        shutil.copy(ROOT / "specs" / "large.jsonnet", project / "specs")
        (project / "specs" / "sweep1000.jsonnet").write_text(SWEEP_SPEC)
        hydra_dir = work / "hydra"
        for name, text in HYDRA_FILES.items():
            (hydra_dir / "conf" / name).parent.mkdir(parents=True, exist_ok=True)
            (hydra_dir / "conf" / name).write_text(text)
        (hydra_dir / "app.py").write_text(HYDRA_APP)
        (hydra_dir / "compose.py").write_text(HYDRA_COMPOSE)

        def empty_manifests():
            shutil.rmtree(project / "manifests", ignore_errors=True)

        def empty_multirun():
            shutil.rmtree(hydra_dir / "multirun", ignore_errors=True)

        print(f"python {sys.version.split()[0]}, hydra-core {hydra.__version__}")
        one_expc, one_hydra = paired(
            args.repeats,
            lambda: timed([expc, "build", "specs/large.jsonnet"], project, empty_manifests),
            lambda: timed([python, "app.py", "config", "--cfg", "job", "--resolve"], hydra_dir))
        ratio = statistics.median(one_expc) / statistics.median(one_hydra)
        print(f"one spec   expc build    {describe(one_expc)}")
        print(f"           hydra --cfg   {describe(one_hydra)}")
        print(f"           ratio {ratio:.3f}x (target <= 0.15 s and <= 0.2x)")

        sweep = ["-m", f"lr={','.join(LRS)}", f"warmup_steps={','.join(WARMUPS)}", f"seed={','.join(SEEDS)}"]
        sweep_expc, sweep_hydra = paired(
            args.sweep_repeats,
            lambda: timed([expc, "build", "specs/sweep1000.jsonnet"], project, empty_manifests),
            lambda: timed([python, "app.py", "laptop", *sweep,
                           "hydra.sweep.dir=multirun", "hydra/job_logging=none", "hydra/hydra_logging=none"],
                          hydra_dir, empty_multirun))
        compose_times = [timed([python, "compose.py", str(hydra_dir / "conf"), ",".join(LRS), ",".join(WARMUPS),
                                ",".join(SEEDS)], hydra_dir) for _ in range(args.sweep_repeats)]
        members = len(list((project / "manifests").glob("*.json"))) - 1  # less index.json
        print(f"sweep      expc build    {describe(sweep_expc)} ({members} manifests)")
        print(f"           hydra -m      {describe(sweep_hydra)}, "
              f"ratio {statistics.median(sweep_expc) / statistics.median(sweep_hydra):.4f}x")
        print(f"           hydra compose {describe(compose_times)} (whole process), "
              f"ratio {statistics.median(sweep_expc) / statistics.median(compose_times):.4f}x "
              f"(target <= 2 s and <= 0.02x)")

        helps = [timed([expc, "--help"], work) for _ in range(args.repeats)]
        print(f"expc --help              {describe(helps)} (target <= 0.1 s)")


if __name__ == "__main__":
    main()
