"""The memory estimate (`expc plan`) against torch.cuda.max_memory_allocated on a real GPU: GPTs
of 124M and 350M (and 1.3B where it fits) at ZeRO 1, 2 and 3 and two micro batches, bf16, on all
GPUs of this machine (target: within +-15%). Needs a CUDA device; NOT RUN YET: docs/plan.md says
the GPU table is not measured.

    .venv/bin/python bench/plan_gpu_memory.py [--gpus N] [--models gpt_124m,gpt_350m,gpt_1_3b]
                                              [--micro 4,16] [--stages 1,2,3] [--out DIR]
    .venv/bin/python bench/plan_gpu_memory.py --dry-run    # build the manifests, print estimates and the launch

One `deepspeed` launch runs every configuration in turn (this file again, with --worker). Each
builds the model and engine as the trainer does, trains two steps (Adam's state exists after
the first), resets the peak counter, trains a third step and reads the peak. The estimate is
compared with `allocated` (parameters + gradients + optimizer + activations + buffers): the
fragmentation allowance is for memory the allocator reserves, which max_memory_allocated does
not count. A configuration that runs out of memory is reported as such (the estimate said so,
or not). Prints a Markdown table for docs/plan.md and writes it with the raw figures to OUT.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET = 0.15
PEAKS = [("H200", 989), ("H100 PCIe", 756), ("H100", 989), ("A100", 312)]

SPEC = """local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage({stage}) + {{
  hardware: expc.hardware.h100_80gb_x1 {{ device: '{device}', device_memory_gib: {memory}, peak_tflops: {peak},
                                          procs_per_node: {gpus} }},
  model: expc.models.{model} {{ dropout: 0.0 }},
  data: {{ source: 'synthetic', val_fraction: 0.1 }},
  global_batch_size:: {micro} * {gpus},
  micro_batch_size:: {micro},
  logging+: {{ wandb+: {{ mode: 'disabled' }} }},
}}
"""


def driver(args) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from expc.compile import compile_spec
    from expc.estimate import GIB, memory_per_device
    from expc.project import Project

    if args.dry_run:
        device, memory, peak = "GPU", 80, 989
    else:
        import torch

        if not torch.cuda.is_available():
            print("needs a CUDA device (or --dry-run)", file=sys.stderr)
            return 2
        device = torch.cuda.get_device_name(0)
        memory = round(torch.cuda.get_device_properties(0).total_memory / GIB)
        peak = next((p for name, p in PEAKS if name in device), 989)
    out = Path(args.out or tempfile.mkdtemp(prefix="plan-gpu-"))
    project = out / "project"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(ROOT / "lib", project / "lib")
    (project / "specs").mkdir()
    (project / "manifests").mkdir()
    configs = []
    for model in args.models.split(","):
        for stage in map(int, args.stages.split(",")):
            for micro in map(int, args.micro.split(",")):
                name = f"{model}_zero{stage}_micro{micro}"
                spec = project / "specs" / f"{name}.jsonnet"
                spec.write_text(SPEC.format(stage=stage, device=device, memory=memory, peak=peak, model=model,
                                            micro=micro, gpus=args.gpus))
                (m,) = compile_spec(spec, Project(project), fit_check=False)
                path = project / "manifests" / f"{name}.json"
                path.write_text(json.dumps(m.data))
                estimate = memory_per_device(m.data)
                configs.append((name, path, estimate))
                print(f"{name}: estimate {estimate.allocated:.2f} GiB allocated, {estimate.total:.2f} GiB with the "
                      f"allowance ({estimate.describe()})")
    command = [BIN / "deepspeed", "--num_gpus", str(args.gpus), "--master_port", str(args.port), __file__,
               "--worker", str(out), *[str(p) for _, p, _ in configs]]
    print(" ".join(map(str, command)))
    if args.dry_run:
        return 0
    subprocess.run([str(c) for c in command], cwd=project, check=False)
    rows = ["| run | estimate (GiB) | max_memory_allocated (GiB) | deviation |", "|---|---:|---:|---:|"]
    results = []
    for name, path, estimate in configs:
        found = out / f"{path.stem}.json"
        measured = json.loads(found.read_text()) if found.is_file() else {"error": "no result (the launch failed)"}
        if "peak" in measured:
            deviation = (estimate.allocated * GIB - measured["peak"]) / measured["peak"]
            cell = f"{measured['peak'] / GIB:.2f} | {deviation:+.1%}{'' if abs(deviation) <= TARGET else ' (outside +-15%)'}"
        else:
            deviation, cell = None, f"{measured['error']} | "
        rows.append(f"| {name} | {estimate.allocated:.2f} | {cell} |")
        results.append({"run": name, "estimate_allocated_gib": estimate.allocated, "measured": measured,
                        "deviation": deviation})
    table = "\n".join(rows)
    print(table)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out / 'table.md'}, {out / 'results.json'}")
    return 0


def worker(out: Path, manifests: list[Path]) -> int:
    import deepspeed
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from trainer import data
    from trainer.models import build_model

    deepspeed.init_distributed(dist_backend="nccl")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    device = torch.device("cuda", rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    for path in manifests:
        manifest = json.loads(path.read_text())
        result = {}
        engine = None
        try:
            source = data.load(manifest, Path.cwd(), world, manifest["deepspeed"]["gradient_accumulation_steps"])
            torch.manual_seed(manifest["seed"])
            model = build_model(manifest, Path.cwd())
            engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters()],
                                                   config=copy.deepcopy(manifest["deepspeed"]))
            micro = engine.train_micro_batch_size_per_gpu()
            for step in range(3):
                if step == 2:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                for m in range(engine.gradient_accumulation_steps()):
                    _, loss = engine(*source.batch(data.TRAIN, step, rank, m, micro, device))
                    engine.backward(loss)
                    engine.step()
            torch.cuda.synchronize()
            result = {"peak": torch.cuda.max_memory_allocated(device), "reserved": torch.cuda.max_memory_reserved(device)}
        except torch.cuda.OutOfMemoryError as err:
            result = {"error": f"out of memory: {str(err).splitlines()[0][:200]}"}
        if rank == 0:
            (out / f"{path.stem}.json").write_text(json.dumps(result) + "\n")
        if engine is not None:
            engine.destroy()
        del engine
        torch.cuda.empty_cache()
        torch.distributed.barrier()
    return 0


def main() -> int:
    if "--worker" in sys.argv:
        args = [a for a in sys.argv[1:] if not a.startswith("--local_rank")]
        i = args.index("--worker")
        return worker(Path(args[i + 1]), [Path(a) for a in args[i + 2:]])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--models", default="gpt_124m,gpt_350m,gpt_1_3b")
    parser.add_argument("--micro", default="4,16")
    parser.add_argument("--stages", default="1,2,3")
    parser.add_argument("--port", type=int, default=29710)
    parser.add_argument("--out")
    parser.add_argument("--dry-run", action="store_true")
    return driver(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
