"""`expc run`: a manifest (path or digest prefix), or a spec built first -> a DeepSpeed run in
runs/<digest>/ (or <--runs-dir>/<digest>/).

    build the specs given (written as `expc build` writes them) -> verify the digest -> decide (completed: report; interrupted: resume; --rerun: fresh attempt)
    -> plan the launch (commands.py) -> run the real `deepspeed` launcher in its own process group
    -> follow metrics.jsonl for a rank-0 progress bar -> report the outcome

A failed run exits non-zero with the last lines of the failing rank's log. Ctrl-C (or a SIGTERM
sent to `expc run`) is passed to every rank as SIGTERM: each finishes its step, all save a
checkpoint together, and the run is "preempted"; `expc run` again resumes it.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from expc.compile.canonical import load_manifest
from expc.compile.validate import check_loaded
from expc.errors import ExpcError
from expc.pins import check
from expc.project import find_manifest, find_project

from .commands import LaunchOptions, LaunchPlan, plan_launch, plan_multinode_launch
from .multinode import MultinodePlan, Placement

LOG_TAIL_LINES = 30
GROUP_EXIT_TIMEOUT_S = 90  # the launcher gives ranks 30 s after SIGTERM; saving fits well inside


@dataclass
class RunRequest:
    ref: str  # a manifest path or a digest prefix
    dry_run: bool = False
    rerun: bool = False
    master_port: int = 29500
    placement: Placement = field(default_factory=Placement)  # multi-node options (multinode.py)
    runs_dir: Path | None = None  # where runs go; None: EXPC_RUNS_DIR, else <project>/runs
    devices: tuple[int, ...] | None = None  # GPUs of this machine (--devices); None: the first ones


@dataclass
class Run:
    """A run folder as the API returns it: where it is and what its metadata.json says."""

    digest: str
    dir: Path
    metadata: dict

    @property
    def status(self) -> str | None:
        """running, completed, failed or preempted; None before the first launch (a dry run)."""
        return self.metadata.get("status")

    def metrics(self) -> list[dict]:
        """metrics.jsonl, one dict per line (training steps and evaluations)."""
        path = self.dir / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


def run_of(ref: str, runs_dir: Path | None = None) -> Run:
    path = find_manifest(ref)
    _, digest = load_manifest(path)
    run_dir = find_project(path).with_runs(runs_dir).runs / digest
    return Run(digest, run_dir, read_metadata(run_dir))


def is_spec(ref: str) -> bool:
    return str(ref).endswith((".jsonnet", ".cue"))


def build_targets(targets, tla: dict | None = None, sets=(), engine: str = "gojsonnet", sweeps=()):
    """What `expc run` was given -> (the manifest refs to run, in order; the manifests built).

    A spec is built first, exactly as `expc build` builds it (manifests written, the index
    updated; all specs compile or nothing is written), and stands for its manifests, a sweep's
    members in order. A manifest or digest prefix passes through. `--tla`, `--set` and `--sweep`
    shape a spec; a manifest is fixed by its digest, so they are refused when one is given."""
    from expc.compile import build

    specs = list(dict.fromkeys(t for t in targets if is_spec(t)))
    fixed = [t for t in targets if not is_spec(t)]
    if (tla or sets or sweeps) and fixed:
        given = [name for name, used in (("--tla", tla), ("--set", sets), ("--sweep", sweeps)) if used]
        verb = "shape" if len(given) > 1 else "shapes"
        raise ExpcError(f"{' and '.join(given)} {verb} a spec, but {fixed[0]} is a manifest: its digest fixes "
                        "every value. "
                        "Give the spec instead (`expc run SPEC " + ("--set PATH=VALUE" if sets else "--tla NAME=VALUE")
                        + "`), or build a new manifest with `expc build`")
    built = build(specs, tla, sets, engine=engine, sweeps=sweeps) if specs else []
    by_spec: dict[str, list] = {}
    for m in built:
        by_spec.setdefault(m.spec, []).append(m)
    refs = []
    for target in targets:
        if is_spec(target):
            spec = find_project(target).relative(target)
            refs += [str(m.path) for m in by_spec.pop(spec, [])]  # a spec given twice runs once
        else:
            refs.append(target)
    return refs, built


def run_all(refs, dry_run: bool = False, rerun: bool = False, master_port: int = 29500,
            placement: Placement | None = None, runs_dir: Path | None = None) -> int:
    """Several manifests (a sweep): every one is found and verified before the first trains;
    then they run one after another, stopping at the first that does not complete."""
    run_dirs = []
    for ref in refs:
        path = find_manifest(ref)
        manifest, digest = load_manifest(path)
        check_loaded(manifest, str(path))
        check_inputs(manifest, find_project(path).root, dry_run, warn=False)  # run() warns, once
        run_dirs.append(find_project(path).with_runs(runs_dir).runs / digest)
    for ref, run_dir in zip(refs, run_dirs):
        code = run(RunRequest(ref, dry_run=dry_run, rerun=rerun, master_port=master_port,
                              placement=placement or Placement(), runs_dir=runs_dir))
        submitted = placement is not None and placement.launcher == "slurm"  # queued, not yet run
        stopped = not (dry_run or submitted) and read_metadata(run_dir).get("status") != "completed"  # e.g. preempted
        if code or stopped:
            return code
    return 0


def run(request: RunRequest) -> int:
    """Returns the exit status for the CLI; raises ExpcError for user mistakes and failed runs."""
    path = find_manifest(request.ref)
    manifest, digest = load_manifest(path)  # refuses a file whose content does not match its name
    check_loaded(manifest, str(path))  # and one named by its digest that no build wrote
    project = find_project(path).with_runs(request.runs_dir)
    # Every file it pins (base model, data) still has its pinned bytes: a stat per file through
    # the hash cache, so this is cheap, and a changed input stops here rather than on every rank.
    check_inputs(manifest, project.root, request.dry_run)
    run_dir = project.runs / digest
    options = launch_options(path, run_dir, request.master_port, request.devices)
    placement = request.placement
    multinode = placement.given or manifest["hardware"]["nodes"] > 1
    if request.devices is not None:
        check_devices(manifest, request.devices, multinode)
    plan = plan_multinode_launch(manifest, digest, options, placement) if multinode else plan_launch(manifest, options)
    if request.dry_run:
        click.echo(plan.describe(), nl=False)
        return 0
    node = placement.node_rank or 0  # per-node (ssh-less) launches share the run folder
    if node and request.rerun:
        raise ExpcError("--rerun goes to node 0 only: it moves the previous attempt aside, for every node")
    shown = project.relative(run_dir)
    if already_completed(read_metadata(run_dir), digest, shown, request.rerun):
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    if multinode and plan.launcher == "slurm":
        write_plan(plan, run_dir)
        return submit(plan, digest, project)
    with run_lock(run_dir, digest, node, shown):
        meta = read_metadata(run_dir)  # again, under the lock: another `expc run` may just have finished it
        if already_completed(meta, digest, shown, request.rerun):
            return 0
        if request.rerun and meta:
            attempt = archive_attempt(run_dir)
            click.echo(f"{digest[:12]}: previous attempt moved to {shown}/attempts/{attempt}/")
        if multinode:
            write_plan(plan, run_dir, placement.node_rank)
            where = f" on {manifest['hardware']['nodes']} nodes ({plan.launcher}" + (
                f", this is node {node})" if placement.node_rank is not None else ")")
            plan = LaunchPlan(plan.commands[0], plan.env, run_dir,
                              manifest["hardware"]["nodes"] * manifest["hardware"]["procs_per_node"])
        else:
            where = ""
        step = latest_checkpoint_step(run_dir)
        max_steps = manifest["train"]["max_steps"]
        if step:
            # "running" with nobody holding the lock: the last launch died without a word (kill -9)
            how = "interrupted" if meta.get("status") == "running" else meta.get("status")
            click.echo(f"resuming {digest[:12]} from step {step} of {max_steps} ({how}){where}: {shown}/")
        else:
            click.echo(f"training {digest[:12]}: {plan.world_size} processes{where}, {max_steps} steps: {shown}/")
        log_name = f"launcher-node{node}.log" if placement.node_rank is not None else "launcher.log"
        return launch(plan, run_dir, digest, max_steps, step, project, log_name)


def already_completed(meta: dict, digest: str, shown: str, rerun: bool) -> bool:
    if meta.get("status") != "completed" or rerun:
        return False
    click.echo(f"{digest[:12]} is already completed (step {meta.get('step')}): results in {shown}/")
    click.echo("nothing to do; `expc run --rerun` trains it again as a fresh attempt")
    return True


def check_inputs(manifest: dict, root: Path, dry_run: bool, warn: bool = True) -> None:
    """A changed input is an error; one that is not on this machine (a cluster's data, seen
    from a laptop) is an error for a run and a warning for a dry run, which only prints. So is
    a DeepSpeed setting the trainer would silently not honour (trainer_unsupported)."""
    unsupported = trainer_unsupported(manifest)
    if unsupported:
        raise ExpcError(unsupported)
    changed, absent = check(manifest, root)
    if dry_run and not changed:
        for problem in absent if warn else []:
            click.echo(f"warning: {problem.render()} (a run refuses this)", err=True)
        return
    if changed or absent:
        raise ExpcError(sorted(changed + absent, key=lambda p: p.location or ""))


def trainer_unsupported(manifest: dict) -> list:
    """DeepSpeed settings that are valid (so the manifest builds, as DeepSpeed accepts it) but
    that expc's trainer does not act on: launching would ignore them without a word."""
    from expc.errors import Problem

    ds = manifest["deepspeed"]
    problems = []
    compile_section = ds.get("compile")
    if isinstance(compile_section, dict) and compile_section.get("disable") is not True:
        problems.append(Problem("DeepSpeed compiles only when the training script calls "
                                "engine.compile(), and expc's trainer does not (on CPU it would build C++ "
                                "kernels at every launch); remove the section or set \"disable\": true",
                                "$.deepspeed.compile"))
    if ds.get("sequence_parallel_size", 1) != 1:
        problems.append(Problem("expc's trainer gives every rank its own "
                                "micro batches and does not split sequences, so the run would train on more "
                                "samples per step than train_batch_size says; remove it or set it to 1",
                                "$.deepspeed.sequence_parallel_size"))
    return problems


def write_plan(plan: MultinodePlan, run_dir: Path, node_rank: int | None = None) -> None:
    """The launch as it was made: its files (hostfile, .deepspeed_env, slurm.sbatch) and
    launch-plan.json (launch-plan-node<R>.json for each node of a per-node launch), next to the
    run's results."""
    from expc.compile.write import write_atomic

    (run_dir / "logs").mkdir(parents=True, exist_ok=True)  # Slurm does not create its output folder
    for name, text in plan.files.items():
        write_atomic(run_dir / name, text)
    name = "launch-plan.json" if node_rank is None else f"launch-plan-node{node_rank}.json"
    write_atomic(run_dir / name, json.dumps(plan.as_json(), indent=2) + "\n")


def submit(plan: MultinodePlan, digest: str, project) -> int:
    import shutil
    import subprocess

    script = plan.commands[0][-1]
    if not shutil.which("sbatch"):
        raise ExpcError(f"sbatch is not on PATH; submit {project.relative(script)} from a Slurm login node")
    done = subprocess.run(plan.commands[0], capture_output=True, text=True)
    if done.returncode != 0:
        raise ExpcError(f"sbatch refused {project.relative(script)}: {done.stderr.strip()}")
    click.echo(f"{digest[:12]}: {done.stdout.strip()} (script {project.relative(script)})")
    return 0


def launch_options(path: Path, run_dir: Path, master_port: int, devices=None) -> LaunchOptions:
    from trainer.tracking import has_api_key  # light: no torch

    return LaunchOptions(manifest_path=path.resolve(), run_dir=run_dir.resolve(),
                         bin_dir=Path(sys.executable).parent, master_port=master_port,
                         wandb_key=has_api_key(), operator_env=dict(os.environ), devices=devices)


def check_devices(manifest: dict, devices: tuple[int, ...], multinode: bool) -> None:
    hardware = manifest["hardware"]
    if multinode:
        raise ExpcError("--devices places a single-node run; a multi-node run takes every node's devices")
    if hardware["accelerator"] == "cpu":
        raise ExpcError(f"--devices names GPUs, but the manifest trains on CPU ({hardware['name']})")
    if len(devices) != hardware["procs_per_node"] or len(set(devices)) != len(devices):
        raise ExpcError(f"--devices gives {len(set(devices))} distinct GPU(s); the manifest runs "
                        f"{hardware['procs_per_node']} process(es), one per GPU")


def read_metadata(run_dir: Path) -> dict:
    path = run_dir / "metadata.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def latest_checkpoint_step(run_dir: Path) -> int:
    from trainer.rundir import latest_step  # the trainer's own rule for a complete checkpoint

    return latest_step(run_dir / "checkpoints")


class run_lock:
    """One `expc run` per digest at a time: two launches writing the same checkpoints would
    corrupt each other. The lock is released by the kernel if expc dies; the holder writes its
    process id into the lock file, so the one refused can say who holds it."""

    def __init__(self, run_dir: Path, digest: str, node: int = 0, shown: str | None = None):
        # Each node of a per-node launch holds its own lock (on one machine, in tests, they meet).
        self.path, self.digest = run_dir / (f".lock-node{node}" if node else ".lock"), digest
        self.shown = shown or str(run_dir)

    def __enter__(self):
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip()
            self.file.close()
            by = f" (process {holder})" if holder.isdigit() else ""
            raise ExpcError(f"{self.digest[:12]} is being run by another `expc run` on this machine{by}; "
                            f"nothing was started. Wait for it to finish (its progress is in "
                            f"{self.shown}/metrics.jsonl) or stop it, then run this again") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def archive_attempt(run_dir: Path) -> int:
    """Move everything of the previous attempt into attempts/<n>/ (history is kept, and the
    trainer counts the attempts to give the new one its own W&B run)."""
    attempts = run_dir / "attempts"
    attempt = 1 + len(list(attempts.glob("*"))) if attempts.is_dir() else 1
    target = attempts / str(attempt)
    target.mkdir(parents=True)
    for item in run_dir.iterdir():
        if item.name != "attempts" and not item.name.startswith(".lock"):
            shutil.move(str(item), str(target / item.name))
    return attempt


def launch(plan: LaunchPlan, run_dir: Path, digest: str, max_steps: int, start_step: int, project,
           log_name: str = "launcher.log") -> int:
    import subprocess

    plan.logs.mkdir(parents=True, exist_ok=True)
    launcher_log = open(plan.logs / log_name, "a")
    started = time.time()
    # Its own session: the terminal's Ctrl-C reaches only us, and we stop the ranks in order.
    proc = subprocess.Popen(plan.argv, env={**os.environ, **plan.env}, cwd=project.root,
                            stdout=launcher_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    follower = MetricsFollower(run_dir / "metrics.jsonl", started)
    stop = StopSignals()
    try:
        with Progress(digest, max_steps, start_step) as progress:
            while proc.poll() is None:
                time.sleep(0.2)
                progress.update(follower.new_records())
                if stop.count == 1 and not stop.forwarded:
                    stop.forwarded = True
                    click.echo("\nstopping: every rank saves a checkpoint, then exits (Ctrl-C again kills)", err=True)
                    stop_ranks(proc.pid)
                elif stop.count > 1:  # asked twice: no more waiting
                    _signal_group(proc.pid, signal.SIGKILL)
            progress.update(follower.new_records())
    finally:
        stop.restore()
        proc.wait()
        wait_for_group(proc.pid)
        launcher_log.close()
    return report(proc.returncode, plan, run_dir, digest, stop.first, project)


class StopSignals:
    """Ctrl-C (SIGINT) or a scheduler's SIGTERM to `expc run`: counted here, acted on by the
    polling loop (never inside the handler)."""

    def __init__(self):
        self.count, self.first, self.forwarded = 0, None, False
        self.previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(self, signum, frame):
        self.count += 1
        self.first = self.first or signal.Signals(signum).name

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def stop_ranks(launcher_pid: int) -> None:
    """SIGTERM to the ranks themselves, not to the launcher: DeepSpeed's launcher would answer
    by terminating each rank's whole process tree (W&B's service with it) one rank at a time.
    The ranks save together and exit 0, and the launcher then ends on its own."""
    import psutil

    try:
        ranks = [p for p in psutil.Process(launcher_pid).children(recursive=True)
                 if p.cmdline()[1:4] == ["-u", "-m", "trainer"]]
    except psutil.Error:
        ranks = []
    if not ranks:  # still starting: nothing is training yet, stop everything
        _signal_group(launcher_pid, signal.SIGTERM)
    for rank in ranks:
        try:
            rank.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def wait_for_group(pgid: int, timeout: float = GROUP_EXIT_TIMEOUT_S) -> None:
    """The top `deepspeed` process exits before its ranks; wait for every process of the group
    (ranks hold the port and write the checkpoint), killing stragglers after the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            _signal_group(pgid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.2)


def report(returncode: int, plan: LaunchPlan, run_dir: Path, digest: str, interrupted: str | None,
           project) -> int:
    """The outcome, and the exit status: 0 for completed or preempted by a SIGTERM (a scheduler
    asked, the run saved and stopped cleanly), 130 after Ctrl-C, 1 (ExpcError) for a failure."""
    meta = read_metadata(run_dir)
    status, step = meta.get("status"), meta.get("step")
    shown = project.relative(run_dir)
    if status == "preempted" and (returncode == 0 or interrupted):
        click.echo(f"{digest[:12]} stopped at step {step} with a checkpoint; `expc run {digest[:12]}` resumes it")
        return 130 if interrupted == "SIGINT" else 0
    if returncode == 0 and status == "completed":
        click.echo(f"{digest[:12]} completed: {summary(run_dir)}")
        exported = ", export/" if (run_dir / "export").is_dir() else ""
        click.echo(f"results in {shown}/ (metrics.jsonl, checkpoints/, logs/, wandb/{exported})")
        sample = run_dir / "sample.txt"
        if sample.is_file():
            click.echo(f"sample ({project.relative(sample)}):\n{sample.read_text(encoding='utf-8').rstrip()}")
        return 0
    if interrupted:
        click.echo(f"{digest[:12]} was stopped before it could save (status {status}, step {step})", err=True)
        return 130
    log, tail = failing_log(plan.logs)
    where = f"last lines of {project.relative(log)}:\n{tail}" if log else "no rank log was written"
    if status == "running" and returncode != 0:
        # Only rank 0 records a failure itself; when another rank failed alone (or died), the
        # launcher's exit status is the only word of it: record it, so the folder tells the truth.
        record_failure(run_dir, returncode, log, tail)
        status = "failed"
    raise ExpcError(f"the run failed (launcher exit status {returncode}, status {status}); {where}",
                    context=None)


def record_failure(run_dir: Path, returncode: int, log: Path | None, tail: str) -> None:
    from datetime import datetime, timezone

    from trainer.rundir import update_metadata  # light: no torch

    rank = f"rank {log.stem.rsplit('rank', 1)[1]}" if log else "a rank"
    error = f"{rank} failed (launcher exit status {returncode})" + (f"; last lines of logs/{log.name}:\n{tail}"
                                                                    if log else "; no rank log was written")
    try:
        update_metadata(run_dir, status="failed", error=error[-2000:],
                        end=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    except OSError as err:  # a full disk, most likely what failed the run too
        click.echo(f"warning: could not record the failure in {run_dir / 'metadata.json'}: {err}", err=True)


def summary(run_dir: Path) -> str:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    losses = [r["val_loss"] for r in records if "val_loss" in r]
    train = [r for r in records if "loss" in r]
    parts = [f"step {train[-1]['step']}" if train else "no steps"]
    if len(losses) >= 2:
        parts.append(f"validation loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    if train:
        parts.append(f"train loss {train[-1]['loss']:.3f}, {train[-1]['elapsed']:.0f} s of training")
    return ", ".join(parts)


def failing_log(logs: Path) -> tuple[Path | None, str]:
    """The newest launch's rank logs; the failing rank is the first whose log shows a traceback
    or an error line, else the one written last."""
    rank_logs = sorted(logs.glob("*_rank*.log"))
    if not rank_logs:
        return None, ""
    newest = rank_logs[-1].name.split("_rank")[0]
    candidates = sorted((p for p in rank_logs if p.name.startswith(newest + "_rank")),
                        key=lambda p: int(p.stem.rsplit("rank", 1)[1]))
    failing = next((p for p in candidates if _shows_failure(p)), max(candidates, key=lambda p: p.stat().st_mtime))
    lines = failing.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return failing, "\n".join("  " + line for line in lines)


def _shows_failure(path: Path) -> bool:
    text = path.read_text(errors="replace")
    return "Traceback (most recent call last)" in text or "\nerror: " in text or text.startswith("error: ")


class MetricsFollower:
    """New records of metrics.jsonl since the last call (the trainer rewrites the file when it
    resumes, so a shrunken file is read again from the top)."""

    def __init__(self, path: Path, since: float):
        self.path, self.offset, self.since = path, 0, since

    def new_records(self) -> list[dict]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if stat.st_mtime < self.since - 1:  # the previous session's file, not yet rewritten
            return []
        if stat.st_size < self.offset:
            self.offset = 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.decode().splitlines() if line]


class Progress:
    """Rank 0's progress: a bar with loss and ETA on a terminal, otherwise a plain line per
    logged step with loss, tokens/s and ETA, and one per evaluation (CI logs, pipes)."""

    def __init__(self, digest: str, max_steps: int, start_step: int):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.max_steps, self.start_step = max_steps, start_step
        self.bar = None
        if self.console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(TextColumn(digest[:12]), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[loss]}"), TimeElapsedColumn(),
                                    TextColumn("eta"), TimeRemainingColumn(), console=self.console)
            self.task = self.bar.add_task("train", total=max_steps, completed=start_step, loss="starting")

    def __enter__(self):
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()

    def update(self, records: list[dict]) -> None:
        for r in records:
            if "loss" in r:
                text = f"loss {r['loss']:.4f}"
                if self.bar:
                    self.bar.update(self.task, completed=r["step"], loss=text)
                else:
                    self.console.print(f"step {r['step']}/{self.max_steps} {text} "
                                       f"({r['tokens_per_s']:.0f} tokens/s, eta {eta(r, self.max_steps)})",
                                       highlight=False, soft_wrap=True)
            elif "val_loss" in r and self.bar is None:
                self.console.print(f"step {r['step']}/{self.max_steps} validation loss {r['val_loss']:.4f}",
                                   highlight=False, soft_wrap=True)


def eta(record: dict, max_steps: int) -> str:
    """Time left, h:mm:ss, at the attempt's average pace so far: `elapsed` is the training time
    of every launch of this attempt (evaluation and checkpoints included, start-up not), so the
    estimate holds across resumes without any state here."""
    step = record["step"]
    if not step:
        return "?"
    seconds = round(record["elapsed"] * (max_steps - step) / step)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
