"""The trainer: one manifest and a run directory -> a trained model, its metrics, checkpoints
and a sample, in runs/<digest>/. Started once per rank by DeepSpeed's launcher:

    deepspeed --num_gpus 2 --module trainer manifests/<digest>.json [--run-dir DIR]

Read top to bottom: verify the manifest and every file it pins, join the process group, build
the data source, model and engine from the manifest (its `deepspeed` section verbatim), resume
from the last checkpoint if there is one, then loop: a step over the accumulated micro-batches, one small all-reduce (mean loss and
whether any rank was asked to stop), logging, evaluation and checkpoints at the manifest's
intervals. SIGTERM/SIGINT only set a flag; all ranks then save together and exit 0 as
"preempted" (saving inside a signal handler deadlocks the collectives). A completed fine-tune
exports its adapter (or weights) to runs/<digest>/export/.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import signal
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from expc.compile.canonical import load_manifest
from expc.errors import ExpcError, disk_error

log = logging.getLogger("trainer")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="manifests/<digest>.json")
    parser.add_argument("--run-dir", help="where the run's files go (default: runs/<digest> in the project)")
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [rank {rank}] %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        # Before anything joins a collective: a file whose content does not match its name is
        # refused on every rank.
        manifest, digest = load_manifest(args.manifest)
        from expc.compile.validate import check_loaded
        from expc.pins import verify

        check_loaded(manifest, args.manifest)
        # Every file the manifest pins (a base model's weights, data) is the one it was built
        # with, checked on every rank before torch is loaded. expc run starts every rank in the
        # project root, where the manifest's paths start.
        verify(manifest, Path.cwd())
        if args.run_dir:
            run_dir = Path(args.run_dir)
        else:
            from expc.project import find_project

            run_dir = find_project(args.manifest).runs / digest
    except ExpcError as err:
        print(f"error: {err.render()}", file=sys.stderr, flush=True)
        return 1
    try:
        return train(manifest, digest, Path(args.manifest), run_dir.resolve())
    except BaseException as err:
        err = disk_error(err) or err  # a full or read-only disk is the operator's to fix, not a bug
        if rank == "0" and (run_dir / "metadata.json").is_file():
            from .rundir import update_metadata

            try:
                update_metadata(run_dir, status="failed", error=f"{type(err).__name__}: {err}"[:2000],
                                end=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            except OSError as unrecorded:  # the same full disk: say so, and keep the real error
                print(f"error: could not record the failure in {run_dir / 'metadata.json'}: {unrecorded}",
                      file=sys.stderr, flush=True)
        if isinstance(err, ExpcError):
            print(f"error: {err.render()}", file=sys.stderr, flush=True)
            return 1
        raise


class StopFlag:
    """Set by SIGTERM (a preempting scheduler) or SIGINT (Ctrl-C); read once per step."""

    def __init__(self):
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request)

    def request(self, signum, frame):
        self.requested = True


def pin_threads(threads: int) -> None:
    """One thread count everywhere: it changes both speed and the bits of the result."""
    import torch

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)


def skip_shm_build() -> None:
    """DeepSpeed JIT-compiles a shared-memory comm op on every CPU launch (~45 s) that training
    does not use. Patch its builder on the module object itself (`import deepspeed.comm.torch as
    m` would bind the torch package, not this module)."""
    import deepspeed.comm.torch  # noqa: F401  (loads the module)

    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None


def train(manifest: dict, digest: str, manifest_path: Path, run_dir: Path) -> int:
    hardware, loop = manifest["hardware"], manifest["train"]
    seed = manifest["seed"]
    stop = StopFlag()
    pin_threads(manifest["launch"]["threads_per_process"])
    if hardware["accelerator"] == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before deepspeed picks an accelerator
    import deepspeed
    import torch
    import torch.distributed as dist

    from expc.estimate import flops_per_token
    from expc.project import find_project

    from . import data, rundir
    from .agreement import check_agreement, source_commit
    from .models import build_model
    from .ranks import adopt_launcher_ranks
    from .tracking import start_tracking

    root = Path.cwd()  # pinned files verified in main(), from here

    # ---- process group -------------------------------------------------------------------
    if hardware["accelerator"] == "cpu":
        skip_shm_build()
        device = torch.device("cpu")
    else:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)  # before the process group, so NCCL binds the right GPU
    adopt_launcher_ranks()
    timeout = timedelta(seconds=float(os.environ.get("EXPC_DIST_TIMEOUT_S", 1800)))
    deepspeed.init_distributed(dist_backend=hardware["backend"], timeout=timeout, verbose=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    fingerprints = check_agreement(digest, hardware)  # same manifest, versions, commit; devices on GPU
    planned = hardware["nodes"] * hardware["procs_per_node"]
    if world != planned:
        raise ExpcError(f"started with {world} processes, but the manifest plans {hardware['nodes']} "
                        f"node(s) x {hardware['procs_per_node']} = {planned} (its batch sizes assume that)",
                        "$.hardware")

    # ---- run directory ---------------------------------------------------------------------
    checkpoints = run_dir / "checkpoints"
    resume_step = rundir.latest_step(checkpoints)
    attempt = 1 + len(list((run_dir / "attempts").glob("*"))) if (run_dir / "attempts").is_dir() else 1
    if rank == 0:
        checkpoints.mkdir(parents=True, exist_ok=True)
        (run_dir / "manifest.json").write_bytes(manifest_path.read_bytes())
        rundir.write_atomic(run_dir / "ds_config.json", json.dumps(manifest["deepspeed"], indent=2, sort_keys=True) + "\n")
        # The project's own commit (where its specs and manifests are versioned) names the run;
        # the checkout expc runs from, when it is one, is recorded beside expc's version.
        project_git = rundir.project_git(find_project(manifest_path).root, run_dir.parent)
        expc_commit = source_commit()
        previous = rundir.read_metadata(run_dir)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        rundir.update_metadata(
            run_dir, digest=digest, attempt=attempt, status="running", step=resume_step,
            max_steps=loop["max_steps"], start=previous.get("start", now) if resume_step else now,
            session_start=now, end=None, error=None, resumed_from=resume_step or None,
            duration_s=previous.get("duration_s", 0) if resume_step else 0,
            git=project_git,
            hosts=sorted({f.host for f in fingerprints}), world_size=world,
            versions={"python": platform.python_version(), "torch": torch.__version__,
                      "deepspeed": deepspeed.__version__, "expc": rundir.expc_version(),
                      **({"expc_commit": expc_commit} if expc_commit != "none" else {})},
            hardware=hardware["name"], accelerator=hardware["accelerator"])
    dist.barrier()

    # ---- data, model, engine ---------------------------------------------------------------
    source = data.load(manifest, root, world, manifest["deepspeed"]["gradient_accumulation_steps"])
    torch.manual_seed(seed)  # identical initial weights on every rank
    model = build_model(manifest, root)
    trainable = [p for p in model.parameters() if p.requires_grad]  # an adapter's, or every weight
    n_params, n_trainable = (sum(_numel(p) for p in group) for group in (list(model.parameters()), trainable))
    partitioned = [p for p in model.parameters() if hasattr(p, "ds_tensor")]
    if partitioned:  # a base loaded partitioned (ZeRO-3): each rank holds only its share
        log.info("loaded partitioned: this rank holds %s of the base's %s parameter elements",
                 f"{sum(p.ds_tensor.numel() for p in partitioned):,}", f"{sum(p.ds_numel for p in partitioned):,}")
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=trainable,
                                           config=copy.deepcopy(manifest["deepspeed"]))
    frozen_base = n_trainable < n_params  # checkpoints leave the frozen weights out
    # Dropout draws differ per rank; the checkpoint restores each rank's own stream.
    torch.manual_seed(seed + 1 + rank)
    client_state = rundir.load_checkpoint(engine, checkpoints, rank, frozen_base) if resume_step else {}
    step = engine.global_steps
    prior_elapsed = client_state.get("elapsed", 0.0)
    micro_batch, accumulation = engine.train_micro_batch_size_per_gpu(), engine.gradient_accumulation_steps()
    flops = flops_per_token(manifest)
    peak = hardware["peak_tflops"] * 1e12 * world
    if rank == 0:
        log.info("%s: %s parameters (%s trained), %s, world %d, %s", digest[:12], f"{n_params:,}",
                 f"{n_trainable:,}", source.description, world,
                 f"resuming from step {step}" if step else "starting at step 0")
        rundir.update_metadata(run_dir, n_params=n_params, trainable_params=n_trainable, corpus=source.description,
                               **source.counts)
    metrics = rundir.Metrics(run_dir / "metrics.jsonl", step) if rank == 0 else None
    tracker = start_tracking(manifest, digest, run_dir, rank, attempt)

    def evaluate() -> float:
        engine.eval()
        total = torch.zeros((), device=device)
        with torch.no_grad():
            for i in range(loop["eval_iters"]):  # the same batches at every evaluation
                total += engine(*source.batch(data.VAL, 0, rank, i, micro_batch, device))[1].float()
        dist.all_reduce(total)
        engine.train()
        return total.item() / (loop["eval_iters"] * world)

    def record(values: dict) -> None:
        if metrics:
            metrics.write(values)
        tracker.log({k: v for k, v in values.items() if k != "step"}, step=values["step"])
        # DeepSpeed's own monitors (TensorBoard, CSV, when the deepspeed section enables them)
        # log only the learning rate by themselves; give them the losses, on their x-axis.
        engine.monitor.write_events([(f"Train/Samples/{key}", values[key], engine.global_samples)
                                     for key in ("loss", "val_loss") if key in values])

    # ---- the loop --------------------------------------------------------------------------
    session_start = time.perf_counter()
    elapsed = lambda: round(prior_elapsed + time.perf_counter() - session_start, 3)  # noqa: E731
    status = "completed"
    try:
        if step == 0:
            record({"step": 0, "val_loss": evaluate(), "elapsed": elapsed()})
        window_seconds, window_tokens = 0.0, 0.0  # training time only: evaluation and saving excluded
        while step < loop["max_steps"]:
            step_start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            tokens = 0
            logs_now = (step + 1) % loop["log_interval"] == 0 or step + 1 == loop["max_steps"]
            measured_norm = None
            for micro in range(accumulation):
                batch = source.batch(data.TRAIN, step, rank, micro, micro_batch, device)
                tokens += source.tokens(batch)
                _, loss = engine(*batch)
                engine.backward(loss)
                if logs_now and micro == accumulation - 1:
                    measured_norm = parameter_grad_norm(engine.module)  # step() clears the gradients
                engine.step()  # DeepSpeed steps the optimizer only at the accumulation boundary
                loss_sum += loss.detach().float()
            step += 1
            # One tiny all-reduce per step: the mean loss, the tokens trained on, and whether any
            # rank must stop.
            shared = torch.stack([loss_sum / accumulation, torch.tensor(float(tokens), device=device),
                                  torch.tensor(float(stop.requested), device=device)])
            dist.all_reduce(shared)
            mean_loss, step_tokens, stop_votes = shared.tolist()  # waits for the step to finish, also on GPU
            window_seconds += time.perf_counter() - step_start
            window_tokens += step_tokens
            last = step == loop["max_steps"]
            if step % loop["log_interval"] == 0 or last:
                tokens_per_s = window_tokens / window_seconds
                # ZeRO and bf16 optimizers report the norm they clipped with; plain fp32 (ZeRO 0)
                # reports none but leaves the gradients on the parameters, measured above.
                grad_norm = engine.get_global_grad_norm()
                grad_norm = measured_norm if grad_norm is None else grad_norm
                record({"step": step, "loss": round(mean_loss / world, 6), "lr": engine.get_lr()[0],
                        "grad_norm": None if grad_norm is None else round(float(grad_norm), 6),
                        "tokens_per_s": round(tokens_per_s, 1), "mfu": round(flops * tokens_per_s / peak, 6),
                        "elapsed": elapsed()})
                window_seconds, window_tokens = 0.0, 0.0
            if step % loop["eval_interval"] == 0 or last:
                record({"step": step, "val_loss": round(evaluate(), 6), "elapsed": elapsed()})
            preempted = stop_votes > 0
            if step % loop["checkpoint_interval"] == 0 or last or preempted:
                rundir.save_checkpoint(engine, checkpoints, step, rank, {"elapsed": elapsed()}, loop["keep_checkpoints"],
                                       frozen_base)
                if rank == 0:
                    rundir.update_metadata(run_dir, step=step, duration_s=elapsed())
            if preempted:
                status = "preempted"
                log.info("stop requested: saved a checkpoint at step %d; run `expc run` again to resume", step)
                break
        if status == "completed" and loop["sample_tokens"] and source.is_text:
            write_sample(engine.module, run_dir, loop["sample_tokens"], seed, device, rank)
        if status == "completed" and hasattr(engine.module, "export"):
            probe = source.batch(data.VAL, 0, 0, 0, 1, device)  # the first validation example
            folder = engine.module.export(engine, run_dir, rank, probe, {"digest": digest, "step": step, **source.counts})
            if rank == 0:
                rundir.update_metadata(run_dir, export=str(folder.relative_to(run_dir)))
                log.info("exported to %s", folder)
    except BaseException:
        status = "failed"  # main() records it in metadata.json
        raise
    finally:
        if metrics:
            metrics.close()
        tracker.finish(exit_code=0 if status != "failed" else 1)
    if rank == 0:
        rundir.update_metadata(run_dir, status=status, step=step, duration_s=elapsed(),
                               end=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    dist.barrier()
    dist.destroy_process_group()
    return 0


def _numel(p) -> int:
    """Elements of a parameter; under ZeRO-3 a rank holds a shard and ds_numel is the whole."""
    return getattr(p, "ds_numel", None) or p.numel()


def parameter_grad_norm(module):
    """The global 2-norm of the gradients held by the parameters (after DeepSpeed's all-reduce,
    before clipping); None when ZeRO keeps them partitioned in its own buffers instead."""
    import torch

    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])).item()


def write_sample(model, run_dir: Path, n_tokens: int, seed: int, device, rank: int) -> None:
    """Every rank generates (under ZeRO-3 each forward gathers parameters collectively); rank 0
    writes sample.txt. Byte-level corpora decode as UTF-8, with stray bytes replaced."""
    import torch

    model.eval()
    generator = torch.Generator().manual_seed(seed)
    prompt = torch.tensor([list(b"\n")], dtype=torch.long, device=device)
    out = model.generate(prompt, n_tokens, generator)[0].tolist()
    if rank == 0:
        text = bytes(t for t in out if t < 256).decode("utf-8", errors="replace")
        (run_dir / "sample.txt").write_text(text + "\n", encoding="utf-8")
        log.info("sample:\n%s", text)
