"""`expc run SPEC --launcher slurm`: a sweep's members as Slurm job arrays.

    members (found and verified) -> what each run folder says (completed: skipped; failed: skipped
    unless --retry-failed; still queued or running under an earlier submission: followed, not
    submitted again) -> one array per shape (nodes, processes per node, CPUs and GPUs per node)
    -> sbatch script(s), kept in <runs>/slurm/ -> sbatch -> the live table, from the run folders
    and squeue, until every job has ended

Each array task runs its member's own `expc run MANIFEST` (through `srun`, once per node, for a
member on several nodes), so the member is verified, locked, resumed and reported exactly as on
one machine, in the same run folder. The state is still the digests and their run folders: a
member's `launch-plan.json` names the array job and task that runs it, which is how a second
command finds jobs that are still in the queue instead of submitting them twice.

Ctrl-C stops the waiting, not the jobs: they stay queued or running (they were handed to the
cluster), and the same command again follows them. `scancel` stops them.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from expc.errors import ExpcError
from expc.project import find_project

from .executor import LiveTable, Member, PlainLines, last_loss, members_of, sweep_names
from .multinode import MASTER_ADDR_LINES
from .run import MetricsFollower, read_metadata

SQUEUE_EVERY_S = 3.0  # how often squeue is asked while waiting (the run folders are read every POLL_S)
POLL_S = 0.5
SCRIPTS = "slurm"  # <runs>/slurm/: the submitted scripts, and Slurm's own output of each task
RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT"}  # squeue states of a task under way


@dataclass(frozen=True)
class Shape:
    """What an array's tasks all ask Slurm for: members of one shape share an array."""

    nodes: int
    procs_per_node: int
    cpus_per_node: int  # procs_per_node x launch.threads_per_process
    gpus_per_node: int  # 0 on CPU

    def describe(self) -> str:
        procs = f"{self.procs_per_node} process{'es' if self.procs_per_node != 1 else ''}"
        return f"{self.nodes} node{'s' if self.nodes != 1 else ''} x {procs}" + (
            f" ({self.gpus_per_node} GPU{'s' if self.gpus_per_node != 1 else ''} per node)"
            if self.gpus_per_node else "")

    @property
    def label(self) -> str:
        return f"{self.nodes}x{self.procs_per_node}" + ("-gpu" if self.gpus_per_node else "")


def shape_of(manifest: dict) -> Shape:
    hardware = manifest["hardware"]
    procs = hardware["procs_per_node"]
    return Shape(hardware["nodes"], procs, procs * manifest["launch"]["threads_per_process"],
                 procs if hardware["accelerator"] == "cuda" else 0)


@dataclass(frozen=True)
class SlurmOptions:
    """The sweep's Slurm choices from `expc run`; none of them is in a manifest."""

    parallel: int | None = None  # the array's %N throttle; None: as many at once as Slurm fits
    partition: str | None = None
    time_limit: str | None = None
    dist_timeout_s: int | None = None  # for members on several nodes
    master_port: int = 29500  # the first member's; each task gets its own
    retry_failed: bool = False


@dataclass
class ArrayJob:
    shape: Shape
    members: list[Member]
    ports: list[int]
    text: str = ""
    script: Path | None = None
    job_id: str | None = None

    def task_id(self, member: Member) -> str:
        return f"{self.job_id}_{self.members.index(member)}"


def group_by_shape(members: list[Member]) -> dict[Shape, list[Member]]:
    """In the order the members first appear, so the same sweep gives the same arrays."""
    groups: dict[Shape, list[Member]] = {}
    for m in members:
        groups.setdefault(shape_of(m.manifest), []).append(m)
    return groups


def plan_arrays(members: list[Member], sweep: str | None, options: SlurmOptions, project_root: Path,
                runs: Path, taken_ports=()) -> list[ArrayJob]:
    """The arrays for the members to submit: every task has its own master port (the first free
    one from --master-port up, over all arrays, skipping those of tasks still under way), so
    members that Slurm places on one node do not meet at the rendezvous."""
    taken, port = set(taken_ports), options.master_port
    arrays = []
    for shape, group in group_by_shape(members).items():
        ports = []
        for _ in group:
            while port in taken:
                port += 1
            ports.append(port)
            port += 1
        array = ArrayJob(shape, group, ports)
        array.text = array_script(array, sweep, options, project_root, runs)
        digest = hashlib.sha256(array.text.encode()).hexdigest()[:12]
        array.script = runs / SCRIPTS / f"{job_name(sweep, shape)}-{digest}.sbatch"
        arrays.append(array)
    return arrays


def count_members(count: int) -> str:
    return f"{count} member{'s' if count != 1 else ''}"


def job_name(sweep: str | None, shape: Shape) -> str:
    return f"expc-{sweep or 'sweep'}-{shape.label}"


def wandb_sweep(sweep: str | None, m: Member) -> str:
    return json.dumps({"sweep": sweep, "member": m.name, "axes": m.axes})


def array_script(array: ArrayJob, sweep: str | None, options: SlurmOptions, project_root: Path, runs: Path) -> str:
    """The sbatch script: task i runs member i's own `expc run`, with its port and W&B names."""
    shape, q = array.shape, shlex.quote
    expc = q(str(Path(sys.executable).parent / "expc"))
    count = len(array.members)
    throttle = f"%{options.parallel}" if options.parallel else ""
    lines = ["#!/bin/bash",
             f"# expc sweep {sweep or '(several manifests)'}: {count_members(count)} "
             f"on {shape.describe()} each, as one Slurm array.",
             "# Task i runs member i's own `expc run`: verified, locked, resumed from its checkpoint or",
             "# reported completed, in its run folder, exactly as on one machine.",
             f"#SBATCH --job-name={job_name(sweep, shape)}",
             f"#SBATCH --array=0-{count - 1}{throttle}",
             f"#SBATCH --nodes={shape.nodes}",
             "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --cpus-per-task={shape.cpus_per_node}"]
    if shape.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={shape.gpus_per_node}")
    if options.partition:
        lines.append(f"#SBATCH --partition={options.partition}")
    if options.time_limit:
        lines.append(f"#SBATCH --time={options.time_limit}")
    lines += [f"#SBATCH --chdir={project_root}",
              f"#SBATCH --output={runs / SCRIPTS}/%x-%A_%a.out",
              "set -euo pipefail",
              'case "$SLURM_ARRAY_TASK_ID" in']
    for task, (m, port) in enumerate(zip(array.members, array.ports)):
        lines.append(f"  {task}) member={q(m.name)} manifest={q(str(m.path.resolve()))} run={q(str(m.run_dir))} "
                     f"port={port}")
        lines.append(f"     wandb={q(wandb_sweep(sweep, m))} ;;")
    lines += ['  *) echo "expc: no member for array task $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;',
              "esac",
              "# The task's output goes to the member's run folder, beside its other logs.",
              'exec >>"$run/logs/slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.out" 2>&1',
              'export EXPC_WANDB_NAME="$member" EXPC_WANDB_SWEEP="$wandb"']
    if sweep:
        lines.append(f"export EXPC_WANDB_GROUP={q(sweep)}")
    runs_arg = f"--runs-dir {q(str(runs))}"
    if shape.nodes == 1:
        lines.append(f'exec {expc} run "$manifest" {runs_arg} --master-port "$port"')
    else:
        timeout = f" --dist-timeout {options.dist_timeout_s}" if options.dist_timeout_s is not None else ""
        lines += MASTER_ADDR_LINES
        lines += ["# One task per node, each starting that node's ranks without ssh; the task expands",
                  "# $SLURM_NODEID (its node's rank), the manifest and port come in as $0 and $1.",
                  f"srun --nodes={shape.nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c "
                  + q(f'exec {expc} run "$0" {runs_arg} --node-rank "$SLURM_NODEID" --master-addr "$MASTER_ADDR" '
                      f'--master-port "$1"{timeout}') + ' "$manifest" "$port"']
    return "\n".join(lines) + "\n"


def refuse_options(placement, devices, rerun: bool) -> None:
    """What does not go with a sweep under Slurm, before anything is written."""
    if devices is not None:
        raise ExpcError("--devices names GPUs of this machine; under --launcher slurm, Slurm gives each "
                        "member's job its GPUs (--gpus-per-node from the manifest's hardware)")
    if rerun:
        raise ExpcError("--rerun trains one completed run again; a sweep under --launcher slurm skips "
                        "completed members (run that member alone with `expc run DIGEST --rerun`)")
    given = [name for name, value in (("--hostfile", placement.hostfile), ("--node-rank", placement.node_rank),
                                      ("--master-addr", placement.master_addr),
                                      ("--launcher-args", placement.launcher_args)) if value]
    if given:
        raise ExpcError(f"--launcher slurm takes its nodes and master address from each job's allocation; "
                        f"drop {', '.join(given)}")


# --- what Slurm says --------------------------------------------------------------------------

def squeue_states() -> dict[str, str]:
    """This user's array tasks still known to Slurm: task id (JOB_TASK) -> state. A pending
    array's tasks are listed one by one (-r)."""
    try:
        listed = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True)
    except OSError as err:
        raise ExpcError(f"squeue could not be run ({err.strerror}); it is how the sweep follows its jobs") from None
    if listed.returncode != 0:
        raise ExpcError(f"squeue failed: {listed.stderr.strip()}")
    states = {}
    for line in listed.stdout.splitlines():
        task, _, state = line.strip().partition("|")
        states[task] = state
    return states


def submitted_task(m: Member) -> tuple[str | None, int | None]:
    """The array task an earlier submission gave this member (its launch-plan.json), if any."""
    try:
        plan = json.loads((m.run_dir / "launch-plan.json").read_text())
    except (OSError, ValueError):
        return None, None
    array = plan.get("array") if plan.get("launcher") == "slurm" else None
    return (array["task"], array.get("master_port")) if isinstance(array, dict) else (None, None)


def record_submission(array: ArrayJob, project) -> None:
    """Each member's launch-plan.json: the script, the array job and its task, the port."""
    from expc.compile.write import write_atomic

    for task, (m, port) in enumerate(zip(array.members, array.ports)):
        plan = {"launcher": "slurm", "commands": [["sbatch", str(array.script)]], "env": {}, "files": [],
                "notes": ["one task of a Slurm array; the script is shared by the array's members"],
                "array": {"job": array.job_id, "task": f"{array.job_id}_{task}", "index": task,
                          "master_port": port, "script": str(array.script)}}
        write_atomic(m.run_dir / "launch-plan.json", json.dumps(plan, indent=2) + "\n")


# --- the sweep ---------------------------------------------------------------------------------

class SlurmSweep:
    def __init__(self, members: list[Member], sweep: str | None, options: SlurmOptions, runs: Path,
                 console=None):
        from rich.console import Console

        self.members, self.sweep, self.options, self.runs = members, sweep, options, runs
        self.console = console or Console(stderr=False, highlight=False, soft_wrap=True)
        self.tasks: dict[str, str] = {}  # digest -> its array task id (JOB_TASK)
        self.stop_requested = 0
        self.submitted: list[ArrayJob] = []

    def classify(self, live: dict[str, str]) -> None:
        """What each folder (and, for an earlier submission, squeue) says before submitting."""
        for m in self.members:
            meta = read_metadata(m.run_dir)
            status = meta.get("status")
            m.step, m.loss = meta.get("step"), last_loss(m.run_dir)
            task, port = submitted_task(m)
            if task in live:
                self.tasks[m.digest], m.port = task, port  # still queued or running: followed, not resubmitted
                self._follow(m, live[task])
            elif status == "completed":
                m.state = "cached"
            elif status == "pruned":
                m.state = "pruned"  # stopped by a local executor's rule; rules do not act under Slurm
            elif status == "failed" and not self.options.retry_failed:
                m.state = "skipped"
            else:
                m.state = "queued"  # never run, stopped or died: submitted (the trainer resumes it)

    def _follow(self, m: Member, state: str) -> None:
        m.state = "running" if state in RUNNING else "pending" if state == "PENDING" else state.lower()
        if m.follower is None:
            m.follower = MetricsFollower(m.run_dir / "metrics.jsonl", time.time())

    def plan(self) -> list[ArrayJob]:
        project_root = find_project(self.members[0].path).root
        taken = [m.port for m in self.members if m.digest in self.tasks and m.port]
        return plan_arrays([m for m in self.members if m.state == "queued"], self.sweep, self.options,
                           project_root, self.runs, taken)

    def dry_run(self) -> int:
        import shutil

        # Tasks an earlier submission still has in Slurm are not submitted again; without squeue
        # (a laptop), none are assumed.
        earlier = self._has_earlier_submissions() and shutil.which("squeue")
        self.classify(squeue_states() if earlier else {})
        arrays = self.plan()
        self.console.print(self._summary(arrays), soft_wrap=True)
        for n, array in enumerate(arrays, 1):
            ports = f"{array.ports[0]}-{array.ports[-1]}" if len(array.ports) > 1 else str(array.ports[0])
            shown = find_project(array.members[0].path).relative(array.script)
            self.console.print(f"# --- array {n} of {len(arrays)}: {count_members(len(array.members))}, "
                               f"{array.shape.describe()} each, master ports {ports}; "
                               f"sbatch {shown} ---", soft_wrap=True)
            self.console.out(array.text, end="", highlight=False)
        return 0

    def _has_earlier_submissions(self) -> bool:
        return any(submitted_task(m)[0] for m in self.members)

    def _summary(self, arrays: list[ArrayJob]) -> str:
        counts = {state: sum(m.state == state for m in self.members)
                  for state in ("cached", "skipped", "pruned")}
        followed = len(self.tasks)
        parts = [f"{counts['cached']} completed (cached)"]
        parts += [f"{counts['skipped']} failed (skipped; --retry-failed submits them)"] if counts["skipped"] else []
        parts += [f"{counts['pruned']} pruned"] if counts["pruned"] else []
        parts += [f"{followed} still in Slurm from an earlier submission"] if followed else []
        queued = sum(len(a.members) for a in arrays)
        to_submit = f"{queued} to submit in {len(arrays)} arra{'ys' if len(arrays) != 1 else 'y'}" if queued \
            else "nothing to submit"
        return (f"# sweep {self.sweep or '(several manifests)'}: {count_members(len(self.members))}; "
                + ", ".join(parts) + f"; {to_submit}")

    def submit(self, wait: bool = True) -> int:
        import shutil

        if not shutil.which("sbatch"):
            raise ExpcError("sbatch is not on PATH; run this from a Slurm login node (`--dry-run` prints the "
                            "scripts without submitting)")
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.classify(squeue_states())
            arrays = self.plan()
            self.console.print(self._summary(arrays).lstrip("# "), soft_wrap=True)
            for array in arrays:
                self._submit(array)
            if not wait or self.stop_requested:
                return self._left_running(130 if self.stop_requested else 0)
            return self._wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum, frame):
        self.stop_requested += 1

    def _submit(self, array: ArrayJob) -> None:
        from expc.compile.write import write_atomic

        project = find_project(array.members[0].path)
        array.script.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(array.script, array.text)
        for m in array.members:
            (m.run_dir / "logs").mkdir(parents=True, exist_ok=True)  # Slurm does not create output folders
        done = subprocess.run(["sbatch", "--parsable", str(array.script)], capture_output=True, text=True,
                              cwd=project.root)
        if done.returncode != 0:
            raise ExpcError(f"sbatch refused {project.relative(array.script)}: {done.stderr.strip()}")
        array.job_id = done.stdout.strip().split(";")[0]
        record_submission(array, project)
        self.submitted.append(array)
        for m, port in zip(array.members, array.ports):
            self.tasks[m.digest], m.port = array.task_id(m), port
            self._follow(m, "PENDING")
        throttle = f", at most {self.options.parallel} at once" if self.options.parallel else ""
        self.console.print(f"submitted array job {array.job_id}: {count_members(len(array.members))} on "
                           f"{array.shape.describe()} each{throttle} (script {project.relative(array.script)})",
                           soft_wrap=True)

    def _job_ids(self) -> list[str]:
        return sorted({task.split("_")[0] for task in self.tasks.values()})

    def _left_running(self, code: int) -> int:
        if not self.tasks:
            return self.outcome()
        jobs = " ".join(self._job_ids())
        how = "stopped waiting; the jobs stay" if self.stop_requested else "not waiting; the jobs are"
        self.console.print(f"{how} in Slurm ({jobs}): `scancel {jobs}` stops them; the same command again "
                           "follows them (and submits nothing twice)", soft_wrap=True)
        return code

    def _wait(self) -> int:
        display = LiveTable(self) if self.console.is_terminal else PlainLines(self)
        asked = 0.0
        with display:
            for m in self.members:
                display.changed(m)
            while any(m.digest in self.tasks and m.state not in FINAL for m in self.members):
                if self.stop_requested:
                    break
                if time.monotonic() - asked >= SQUEUE_EVERY_S:
                    asked = time.monotonic()
                    self._poll_slurm(squeue_states(), display)
                self._poll_folders(display)
                display.refresh()
                time.sleep(POLL_S)
        if self.stop_requested:
            return self._left_running(130)
        return self.outcome()

    def _poll_folders(self, display) -> None:
        for m in self.members:
            if m.state != "running" or m.follower is None:
                continue
            if m.take_records():
                display.progressed(m)

    def _poll_slurm(self, live: dict[str, str], display) -> None:
        for m in self.members:
            task = self.tasks.get(m.digest)
            if task is None or m.state in FINAL:
                continue
            if task in live:
                before = m.state
                self._follow(m, live[task])
                if m.state != before:
                    display.changed(m)
                continue
            # The task has ended: its run folder says how.
            self._poll_folders(display)
            status = read_metadata(m.run_dir).get("status")
            m.state = {"completed": "completed", "failed": "failed", "preempted": "preempted",
                       "pruned": "pruned"}.get(status, "interrupted" if status == "running" else "failed")
            m.eta = ""
            display.changed(m)

    def outcome(self) -> int:
        """0 when every member completed (or was cached, or pruned before); 1 otherwise."""
        done = sum(m.state in ("completed", "cached") for m in self.members)
        cached = sum(m.state == "cached" for m in self.members)
        failed = [m for m in self.members if m.state in ("failed", "skipped")]
        unfinished = [m for m in self.members if m.state in ("preempted", "interrupted")]
        pruned = sum(m.state == "pruned" for m in self.members)
        self.console.print(f"sweep{' ' + self.sweep if self.sweep else ''}: {done} of {len(self.members)} "
                           f"completed ({cached} already were)"
                           + (f", {pruned} pruned" if pruned else "")
                           + (f", {len(failed)} failed" if failed else "")
                           + (f", {len(unfinished)} not finished" if unfinished else ""), soft_wrap=True)
        for m in failed:
            project = find_project(m.path)
            task = self.tasks.get(m.digest)
            where = (f"{project.relative(m.run_dir)}/logs/slurm-{task}.out" if task
                     else f"{project.relative(m.run_dir)}/metadata.json")
            hint = "; `--retry-failed` submits it again" if m.state == "skipped" else ""
            self.console.print(f"  failed: {m.name} ({m.digest[:12]}): see {where}{hint}", soft_wrap=True)
        for m in unfinished:
            self.console.print(f"  {m.state}: {m.name} ({m.digest[:12]}) at step {m.step}; the same command "
                               "submits it again, resuming from its checkpoint", soft_wrap=True)
        return 1 if failed or unfinished else 0


FINAL = ("cached", "completed", "failed", "skipped", "pruned", "preempted", "interrupted")


def submit_sweep(refs, built, options: SlurmOptions, dry_run: bool = False, wait: bool = True,
                 runs_dir: Path | None = None) -> int:
    """`expc run TARGETS --launcher slurm` for several members (or with --parallel)."""
    from expc.compile.stopping import read_rules

    names, sweep = sweep_names(refs, built)
    members = members_of(refs, names, runs_dir, single_node=False)
    for m in members:
        m.run_dir = m.run_dir.resolve()  # the script names it for every node
    seen = set()
    for m in built:
        key = (m.spec, json.dumps(m.tla, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        project = find_project(m.path)
        if read_rules(project.root / m.spec, project, m.tla):
            print(f"warning: {m.spec}'s early stopping rules act under the local executor (--parallel N without "
                  "--launcher); under Slurm every member trains to its end", file=sys.stderr)
    runs = members[0].run_dir.parent
    runner = SlurmSweep(members, sweep, options, runs)
    return runner.dry_run() if dry_run else runner.submit(wait)

