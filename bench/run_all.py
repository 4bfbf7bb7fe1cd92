"""Every benchmark, one after another; each prints its own figures (`make bench`).

    .venv/bin/python bench/run_all.py [--quick] [NAME ...]

--quick passes fewer repeats where a benchmark takes them. The GPU benchmark runs only where
CUDA is present. Benchmarks report; none of them asserts a time.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# name -> (arguments, arguments under --quick)
BENCHMARKS = {
    "compile_vs_hydra": ([], ["--repeats", "3", "--sweep-repeats", "1"]),
    "check_speed": ([], []),
    "big_sweeps": ([], ["--sizes", "1000"]),
    "cue_speed": ([], ["--repeats", "1"]),
    "provenance_cost": ([], []),
    "trainer_step_rate": ([], ["--repeats", "1"]),
    "trainer_startup": ([], ["--repeats", "1"]),
    "lora_vs_hf_trainer": ([], ["--quick"]),
    "hash_throughput": ([], ["--gib", "0.5"]),
    "gpu_mfu": ([], []),
    "plan_gpu_memory": ([], ["--models", "gpt_124m,gpt_350m"]),
}
GPU_ONLY = ("gpu_mfu", "plan_gpu_memory")


def cuda_present() -> bool:
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"run only these ({', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}")
    failed = []
    for name in args.names or BENCHMARKS:
        if name in GPU_ONLY and not cuda_present():
            print(f"== {name}: skipped, no CUDA device", flush=True)
            continue
        full, quick = BENCHMARKS[name]
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *(quick if args.quick else full)]).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
