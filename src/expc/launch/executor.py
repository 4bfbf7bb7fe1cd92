"""`expc run SPEC --parallel N`: a sweep's members on one machine, N at a time.

The sweep's state is its digests and their run folders, nothing else: a member whose folder says
`completed` is skipped (wherever it ran, under whichever sweep), one that was stopped or died
resumes from its checkpoint (the trainer resumes), one that failed is retried only with
--retry-failed. So the executor itself may be stopped (Ctrl-C, SIGTERM: every running member
saves a checkpoint) or killed, and run again: it continues where it stopped.

Each member is launched as its own `expc run MANIFEST` child (verify, lock, launch, follow,
report, exactly as by hand), with its own master port and, on GPUs, its own devices
(`--devices`, disjoint from every other running member's). Its output goes to
<run>/logs/executor.log. The W&B group (the sweep), run name (the member) and axis values reach
the trainer through the launch environment (trainer/tracking.py), so no digest changes.

The live table (member, status, step, loss, ETA) is a rich Live display on a terminal, plain
lines otherwise (a status change, and progress at most every PROGRESS_EVERY_S per member).
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from expc.axes import axis_values, typed
from expc.compile.canonical import load_manifest
from expc.errors import ExpcError
from expc.project import find_manifest, find_project

from .run import MetricsFollower, check_inputs, eta, read_metadata

PROGRESS_EVERY_S = 30.0
POLL_S = 0.5


@dataclass
class Member:
    name: str
    path: Path
    digest: str
    manifest: dict
    run_dir: Path
    axes: dict = field(default_factory=dict)
    state: str = "queued"  # queued, cached, running, busy, completed, failed, preempted, skipped, pruned
    step: int | None = None
    loss: float | None = None
    eta: str = ""
    proc: subprocess.Popen | None = None
    port: int | None = None
    devices: tuple[int, ...] | None = None
    follower: MetricsFollower | None = None
    last_line: float = 0.0
    rules: list = field(default_factory=list)  # early stopping (compile/stopping.py)
    records: list = field(default_factory=list)  # this launch's metrics.jsonl so far
    pruning: dict | None = None  # the decision that stopped it, once taken
    resumed_at: int = 0  # the step this launch resumes from: records up to it were judged before

    @property
    def procs(self) -> int:
        return self.manifest["hardware"]["procs_per_node"]

    @property
    def on_gpu(self) -> bool:
        return self.manifest["hardware"]["accelerator"] != "cpu"

    @property
    def max_steps(self) -> int:
        return self.manifest["train"]["max_steps"]

    def take_records(self) -> list[dict]:
        """The records metrics.jsonl gained since the last call, kept in `records`; step, loss
        and ETA follow the last training record."""
        records = self.follower.new_records()
        for r in records:
            if "loss" in r:
                self.step, self.loss, self.eta = r["step"], r["loss"], eta(r, self.max_steps)
        self.records += records
        return records


def members_of(refs, names: dict[str, str], runs_dir: Path | None, single_node: bool = True) -> list[Member]:
    """Every manifest found and verified (digest, pinned inputs) before the first starts.
    `single_node`: refuse members planned for several nodes (this machine's executor)."""
    members, seen = [], set()
    for ref in refs:
        path = find_manifest(ref)
        manifest, digest = load_manifest(path)
        if digest in seen:
            continue
        seen.add(digest)
        if single_node and manifest["hardware"]["nodes"] > 1:
            raise ExpcError(f"{digest[:12]} plans {manifest['hardware']['nodes']} nodes; --parallel runs "
                            "single-node members on this machine (run it alone with --hostfile or --launcher)")
        check_inputs(manifest, find_project(path).root, dry_run=False, warn=False)
        name = names.get(digest) or digest[:12]
        members.append(Member(name, path, digest, manifest, find_project(path).with_runs(runs_dir).runs / digest,
                              {k: typed(v) for k, v in (axis_values(names.get(digest)) or {}).items()}))
    return members


def visible_gpus() -> list[int]:
    """This machine's GPUs as DeepSpeed numbers them: CUDA_VISIBLE_DEVICES' entries when set
    (DeepSpeed's --include indexes into them), else every GPU nvidia-smi lists."""
    configured = os.environ.get("CUDA_VISIBLE_DEVICES")
    if configured is not None:
        return list(range(len([d for d in configured.split(",") if d.strip()])))
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30,
                                check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(range(sum(line.startswith("GPU ") for line in listed.splitlines())))


def free_devices(gpus: list[int], busy: list[Member], count: int) -> tuple[int, ...] | None:
    """The first `count` GPUs no running member holds; None when fewer are free."""
    taken = {d for other in busy for d in (other.devices or ())}
    free = [g for g in gpus if g not in taken]
    return tuple(free[:count]) if len(free) >= count else None


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def locked(run_dir: Path) -> bool:
    """Whether an `expc run` (an earlier executor's child that outlived it) holds the member."""
    path = run_dir / ".lock"
    if not path.is_file():
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


class Executor:
    def __init__(self, members: list[Member], parallel: int, sweep: str | None, retry_failed: bool = False,
                 master_port: int = 29500, runs_dir: Path | None = None, console=None, feed=None):
        from rich.console import Console

        if parallel < 1:
            raise ExpcError("--parallel must be at least 1")
        self.members, self.parallel, self.sweep = members, parallel, sweep
        self.retry_failed, self.master_port, self.runs_dir = retry_failed, master_port, runs_dir
        self.console = console or Console(stderr=False, highlight=False, soft_wrap=True)
        self.gpus = visible_gpus() if any(m.on_gpu for m in members) else []
        for m in members:
            self._check_fits(m)
        # feed(executor) -> more members, [] for none yet, None once there will be no more: asked
        # whenever a slot is free and nothing is queued (`expc search` proposes its next trial).
        self.feed, self._fed_out = feed, feed is None
        self.stop_requested = 0
        self._histories: dict[str, tuple[tuple, list[dict]]] = {}  # digest -> (file stamp, records)
        self._snapshot: list | None = None  # every member as a rule's peer, once per poll

    def _check_fits(self, m: Member) -> None:
        if m.on_gpu and not self.gpus:
            self.gpus = visible_gpus()
        if m.on_gpu and m.procs > len(self.gpus):
            raise ExpcError(f"{m.name} runs {m.procs} processes, one per GPU; this machine shows "
                            f"{len(self.gpus)} GPU(s)")

    # --- deciding ---------------------------------------------------------------------------

    def classify(self) -> None:
        """What each member's folder says before anything starts."""
        for m in self.members:
            self._classify(m)

    def _classify(self, m: Member) -> None:
        meta = read_metadata(m.run_dir)
        status = meta.get("status")
        m.step = meta.get("step")
        m.loss = last_loss(m.run_dir)
        if status == "completed":
            m.state = "cached"
        elif status == "pruned":
            # pruned by an earlier sweep's rule: it goes on only if this sweep's rules let it
            from expc.compile.stopping import first_stop

            m.state = "pruned" if first_stop(m.rules, read_records(m.run_dir), self.peers(m), again=True) \
                else "queued"
        elif status == "failed" and not self.retry_failed:
            m.state = "skipped"  # failed before: retried only when asked
        else:
            m.state = "queued"

    def _fed(self, display) -> None:
        """More members from the feed, when a slot is free and none is queued."""
        if self._fed_out or self.stop_requested or len(self._busy()) >= self.parallel or \
                any(m.state == "queued" for m in self.members):
            return
        more = self.feed(self)
        if more is None:
            self._fed_out = True
            return
        for m in more:
            self._check_fits(m)
            self._classify(m)
            self.members.append(m)
            display.changed(m)

    # --- running ----------------------------------------------------------------------------

    def run(self) -> int:
        self.classify()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        display = LiveTable(self) if self.console.is_terminal else PlainLines(self)
        try:
            with display:
                for m in self.members:
                    display.changed(m)
                while True:
                    self._poll(display)
                    if self.stop_requested:
                        self._forward_stop()
                    else:
                        self._start_what_fits(display)
                        self._fed(display)
                        self._start_what_fits(display)
                    if (self._fed_out and not any(m.state in ("queued", "running", "busy") for m in self.members)) or (
                            self.stop_requested and not any(m.state in ("running", "busy") for m in self.members)):
                        break
                    display.refresh()
                    time.sleep(POLL_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.outcome()

    def _on_signal(self, signum, frame):
        self.stop_requested += 1

    def _forward_stop(self) -> None:
        """Once: SIGTERM to every running child `expc run`, which stops its ranks after a
        checkpoint. Asked twice: SIGKILL to every member's whole launch."""
        for m in self.members:
            if m.proc is None or m.proc.poll() is not None:
                continue
            if not getattr(m, "stop_sent", False):
                m.stop_sent = True
                m.proc.send_signal(signal.SIGTERM)
            elif self.stop_requested > 1:
                try:
                    os.killpg(m.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _busy(self) -> list[Member]:
        return [m for m in self.members if m.state in ("running", "busy")]

    def _start_what_fits(self, display) -> None:
        for m in self.members:
            if m.state != "queued":
                continue
            if len(self._busy()) >= self.parallel:
                return
            if locked(m.run_dir):
                m.state = "busy"  # an earlier executor's child still trains it: wait for it
                display.changed(m)
                continue
            devices = None
            if m.on_gpu:
                devices = free_devices(self.gpus, self._busy(), m.procs)
                if devices is None:
                    continue  # a smaller member behind it may still fit
            self._start(m, devices)
            display.changed(m)

    def _next_port(self) -> int:
        used = {m.port for m in self._busy()}
        port = self.master_port
        while port in used or not port_free(port):
            port += 1
        return port

    def _start(self, m: Member, devices) -> None:
        m.port, m.devices = self._next_port(), devices
        argv = [sys.executable, "-m", "expc", "run", str(m.path.resolve()), "--master-port", str(m.port)]
        if self.runs_dir:
            argv += ["--runs-dir", str(self.runs_dir)]
        if devices is not None:
            argv += ["--devices", ",".join(map(str, devices))]
        env = {**os.environ, "EXPC_WANDB_NAME": m.name,
               "EXPC_WANDB_SWEEP": json.dumps({"sweep": self.sweep, "member": m.name, "axes": m.axes})}
        if self.sweep:
            env["EXPC_WANDB_GROUP"] = self.sweep
        (m.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        with open(m.run_dir / "logs" / "executor.log", "a") as log:
            # Its own session: a terminal's Ctrl-C reaches the executor only, which stops each
            # member once, in order.
            m.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, cwd=find_project(m.path).root, start_new_session=True)
        m.follower = MetricsFollower(m.run_dir / "metrics.jsonl", time.time())
        m.resumed_at = read_metadata(m.run_dir).get("step") or 0
        m.state = "running"

    def _poll(self, display) -> None:
        self._snapshot = None
        for m in self.members:
            if m.state == "busy":
                if not locked(m.run_dir):
                    status = read_metadata(m.run_dir).get("status")
                    m.state = "cached" if status == "completed" else "queued"
                    display.changed(m)
                continue
            if m.state != "running":
                continue
            records = m.take_records()
            if records:
                display.progressed(m)
                self._apply_rules(m, display, len(m.records) - len(records))
            code = m.proc.poll()
            if code is None:
                continue
            for r in m.follower.new_records():
                if "loss" in r:
                    m.step, m.loss = r["step"], r["loss"]
            status = read_metadata(m.run_dir).get("status")
            if m.pruning and status != "completed":
                record_pruning(m, self.sweep)
                m.state = "pruned"
            elif status == "completed" and code == 0:
                m.state = "completed"
            elif status == "preempted" or code == 130 or (self.stop_requested and status != "failed"):
                m.state = "preempted"  # stopped (with a checkpoint, or before training began): resumes
            else:
                m.state = "failed"
            m.eta = ""
            display.changed(m)

    def _apply_rules(self, m: Member, display, new_from: int) -> None:
        """A rule that says stop: SIGTERM to the member's `expc run`, which stops every rank
        after a checkpoint; the decision is recorded once it has exited. Each new record is
        judged in turn, as Optuna's pruners judge each report."""
        if not m.rules or m.pruning:
            return
        from expc.compile.stopping import first_stop

        peers = self.peers(m)
        for end in range(new_from + 1, len(m.records) + 1):
            if m.records[end - 1].get("step", 0) <= m.resumed_at and m.resumed_at:
                continue  # a resumed member's history, read again: its rungs were passed then
            decision = first_stop(m.rules, m.records[:end], peers)
            if decision:
                m.pruning = decision
                m.stop_sent = True
                m.proc.send_signal(signal.SIGTERM)
                display.changed(m)
                return

    def peers(self, m: Member) -> list:
        """The sweep's other members as their run folders show them now: what the median and
        successive halving compare with (a member's metrics.jsonl is read again only once it
        changed). A pruned member's history ends at the decision that stopped it."""
        if not any(rule.uses_peers for rule in m.rules):
            return []
        if self._snapshot is None:
            from expc.compile.stopping import Peer

            self._snapshot = []
            for other in self.members:
                status = read_metadata(other.run_dir).get("status")
                stopped_by = other.pruning or (last_decision(other.run_dir) if status == "pruned" else None)
                self._snapshot.append((other, Peer(self._history(other), status == "completed", stopped_by)))
        return [peer for other, peer in self._snapshot if other is not m]

    def _history(self, m: Member) -> list[dict]:
        path = m.run_dir / "metrics.jsonl"
        try:
            stat = path.stat()
        except FileNotFoundError:
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._histories.get(m.digest)
        if cached is None or cached[0] != stamp:
            cached = self._histories[m.digest] = (stamp, read_records(m.run_dir))
        return cached[1]

    def outcome(self) -> int:
        """0 when every member completed (or was cached); 130 when stopped; 1 with a failure."""
        failed = [m for m in self.members if m.state in ("failed", "skipped")]
        stopped = [m for m in self.members if m.state in ("preempted", "queued", "busy")]
        done = sum(m.state in ("completed", "cached") for m in self.members)
        cached = sum(m.state == "cached" for m in self.members)
        pruned = sum(m.state == "pruned" for m in self.members)
        self.console.print(f"sweep{' ' + self.sweep if self.sweep else ''}: {done} of {len(self.members)} "
                           f"completed ({cached} already were)"
                           + (f", {pruned} pruned" if pruned else "")
                           + (f", {len(failed)} failed" if failed else "")
                           + (f", {len(stopped)} not finished" if stopped else ""))
        for m in failed:
            where = find_project(m.path).relative(m.run_dir)
            hint = "; `--retry-failed` runs it again" if m.state == "skipped" else ""
            self.console.print(f"  failed: {m.name} ({m.digest[:12]}): see {where}/logs/executor.log{hint}")
        if stopped and self.stop_requested:
            self.console.print("  stopped: run the same command again to continue where it stopped")
            return 130
        return 1 if failed else 0


def read_records(run_dir: Path) -> list[dict]:
    """A member's metrics.jsonl; a running member's last line may be half-written: left out."""
    path = run_dir / "metrics.jsonl"
    text = path.read_text() if path.is_file() else ""
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line]


def last_decision(run_dir: Path) -> dict | None:
    """The latest early-stopping decision in a member's folder (the one that pruned it)."""
    try:
        history = json.loads((run_dir / "early_stopping.json").read_text())
    except (OSError, ValueError):
        return None
    return history[-1] if isinstance(history, list) and history and isinstance(history[-1], dict) else None


def record_pruning(m: Member, sweep: str | None) -> None:
    """The decision in the member's folder (early_stopping.json keeps every one, oldest first)
    and `pruned` as its status; its checkpoint stays, to resume from."""
    from trainer.rundir import update_metadata, write_atomic

    path = m.run_dir / "early_stopping.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    history.append({**m.pruning, "sweep": sweep, "member": m.name})
    write_atomic(path, json.dumps(history, indent=2) + "\n")
    update_metadata(m.run_dir, status="pruned")


def last_loss(run_dir: Path) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    for line in reversed(path.read_text().splitlines()):
        if '"loss"' in line:
            return json.loads(line)["loss"]
    return None


STATE_TEXT = {"cached": "completed (cached)", "skipped": "failed (skipped)", "busy": "running elsewhere"}


def row(m: Member) -> list[str]:
    return [m.name, STATE_TEXT.get(m.state, m.state),
            f"{m.step}/{m.max_steps}" if m.step is not None else f"-/{m.max_steps}",
            f"{m.loss:.4f}" if m.loss is not None else "-", m.eta or "-"]


class PlainLines:
    """For logs and pipes: a line per status change, and progress every PROGRESS_EVERY_S."""

    def __init__(self, executor: Executor):
        self.executor = executor

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def changed(self, m: Member) -> None:
        self._line(m)

    def progressed(self, m: Member) -> None:
        if time.monotonic() - m.last_line >= PROGRESS_EVERY_S:
            self._line(m)

    def _line(self, m: Member) -> None:
        m.last_line = time.monotonic()
        name, state, step, loss, left = row(m)
        extra = f" port {m.port}" + (f" devices {','.join(map(str, m.devices))}" if m.devices else "") \
            if m.state == "running" and m.port else ""
        if m.pruning:
            extra += f" (stopping: {m.pruning['comparison']})" if m.state == "running" else \
                f" ({m.pruning['comparison']})"
        self.executor.console.print(f"{name}: {state}, step {step}, loss {loss}, eta {left}{extra}")

    def refresh(self) -> None:
        pass


class LiveTable:
    """On a terminal: one table, redrawn in place."""

    def __init__(self, executor: Executor):
        from rich.live import Live

        self.executor = executor
        self.live = Live(self._table(), console=executor.console, refresh_per_second=2, transient=False)

    def _table(self):
        from rich.table import Table

        table = Table(title=f"sweep {self.executor.sweep}" if self.executor.sweep else None)
        for column in ("member", "status", "step", "loss", "eta"):
            table.add_column(column, justify="right" if column in ("step", "loss", "eta") else "left")
        for m in self.executor.members:
            table.add_row(*row(m))
        return table

    def __enter__(self):
        self.live.start()
        return self

    def __exit__(self, *exc):
        self.live.update(self._table())
        self.live.stop()

    def changed(self, m: Member) -> None:
        self.refresh()

    def progressed(self, m: Member) -> None:
        self.refresh()

    def refresh(self) -> None:
        self.live.update(self._table())


def sweep_names(refs, built) -> tuple[dict[str, str], str | None]:
    """(digest -> member name, the sweep's name). Built members are named by the build; a
    manifest given by path or digest by its index entry. The sweep is named after its spec when
    every member comes from one (specs/sweep_lr.jsonnet -> "sweep_lr")."""
    from expc.compile.write import read_index

    names = {m.digest: m.name for m in built if m.name}
    specs = {m.spec for m in built}
    for ref in refs:
        path = find_manifest(ref)
        digest = path.stem
        if digest in names:
            continue
        sources = read_index(find_project(path))["manifests"].get(digest, {}).get("sources", [])
        for source in sources:
            if source.get("member"):
                names[digest] = source["member"]
                specs.add(source["spec"])
                break
    return names, (Path(next(iter(specs))).stem if len(specs) == 1 else None)


def execute(refs, built, parallel: int, retry_failed: bool = False, master_port: int = 29500,
            runs_dir: Path | None = None) -> int:
    from expc.compile.stopping import read_rules

    names, sweep = sweep_names(refs, built)
    members = members_of(refs, names, runs_dir)
    # early stopping, from each spec built (a manifest given by digest runs without rules)
    rules, by_digest = {}, {}
    for m in built:
        key = (m.spec, json.dumps(m.tla, sort_keys=True))
        if key not in rules:
            project = find_project(m.path)
            rules[key] = read_rules(project.root / m.spec, project, m.tla)
        by_digest[m.digest] = rules[key]
    for member in members:
        member.rules = by_digest.get(member.digest, [])
    return Executor(members, parallel, sweep, retry_failed, master_port, runs_dir).run()
