"""Evaluation under bounds: a spec is evaluated in a child process that may use so much memory,
so much time and write so much output, and no more.

A mistake in a spec must not take the machine down: `std.repeat('x', 1e8)` in a tag made
go-jsonnet grow to 24 GB before the kernel killed it, and a runaway recursion can spin for
ever. The child is watched: its resident memory (from /proc, every few milliseconds; an address
space limit backs it up), its wall time and the size of its result. Past a bound it is killed
and the build fails with an ExpcError naming the bound and how to raise it; nothing is written.

The child is a fork of this process when go-jsonnet is not loaded in it yet and it runs one
thread (the usual case for the command line: a fork costs a few milliseconds, and go's runtime
must not be forked once it runs), else a fork of multiprocessing's fork server (started once,
without go).

Defaults fit a laptop; `EXPC_EVAL_MEMORY_GIB`, `EXPC_EVAL_SECONDS` and `EXPC_EVAL_OUTPUT_MIB`
raise or lower them. They bound the evaluation, never its result: no digest depends on them.
"""
from __future__ import annotations

import os
import pickle
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from expc.errors import ExpcError

_IN_CHILD = "EXPC_IN_BOUNDED_EVALUATION"


@dataclass(frozen=True)
class Bounds:
    memory_gib: float = 4.0
    seconds: float = 300.0
    output_mib: float = 1024.0

    @classmethod
    def from_environment(cls) -> Bounds:
        values = {}
        for field, name in (("memory_gib", "EXPC_EVAL_MEMORY_GIB"), ("seconds", "EXPC_EVAL_SECONDS"),
                            ("output_mib", "EXPC_EVAL_OUTPUT_MIB")):
            text = os.environ.get(name)
            if text is None:
                continue
            try:
                values[field] = float(text)
            except ValueError:
                raise ExpcError(f"{name}={text!r}: expected a number") from None
            if not values[field] > 0:
                raise ExpcError(f"{name}={text!r}: expected a number above 0")
        return cls(**values)


def in_child() -> bool:
    return os.environ.get(_IN_CHILD) == "1"


def run(function, *args, where: str | None = None, **kwargs):
    """function(*args, **kwargs) in a bounded child; its result, or its ExpcError, raised here.
    A bound's error is located at `where` (the spec)."""
    bounds = Bounds.from_environment()
    with tempfile.TemporaryDirectory(prefix="expc-eval-") as scratch:
        result_file, stderr = Path(scratch) / "result.pickle", Path(scratch) / "stderr"
        if _may_fork():
            # The child holds the write end of a pipe: its exit wakes the watch at once.
            done_r, done_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                os.close(done_r)
                _child(function, args, kwargs, result_file, bounds, stderr)
            os.close(done_w)
            try:
                outcome = _watch(pid, None, result_file, bounds, done_r)
            finally:
                os.close(done_r)
        else:
            process = _forkserver().Process(target=_child, args=(function, args, kwargs, result_file, bounds, stderr,
                                                                 os.getcwd()))
            process.start()
            outcome = _watch(process.pid, process, result_file, bounds, process.sentinel)
        return _result(outcome, result_file, bounds, where)


def can_stream() -> bool:
    """Whether stream() can run here: it forks this process (see _may_fork)."""
    return _may_fork() and not in_child()


class Stream:
    """function(*args, emit=emit) in a bounded child, whose records (`emit(bytes)`) are read here
    while it runs: iterate for the records; `.result` is the function's return value once they
    have all come. Any bound passed, or an ExpcError in the child, is raised from the iteration.

    For a big sweep: the child evaluates one member after another in a single go-jsonnet run
    and hands each over as it is made, and this process compiles each as it comes. The
    processes use two cores, and none holds the whole sweep: a pipe's buffer lies between
    them, and a child that runs ahead waits. The bounds are run()'s: the child's memory, its
    time (leaving out the time this process spends on the records, so the bound is the
    evaluation's, not the build's), and the output bound for any one record. A thread here
    watches the child, so this process may go on reading and compiling.

    `ways` > 1: that many children, child i called with `part=(i, ways)`, its records taken as
    records i, i + ways, i + 2 * ways...: the evaluation, slower than the compile, on more cores.
    The memory bound is then their sum's, and `.results` holds each one's return value.
    """

    def __init__(self, function, *args, where: str | None = None, fresh: bool = False, ways: int = 1):
        self.function, self.args, self.where, self.fresh, self.ways = function, args, where, fresh, ways
        self.results: list | None = None

    @property
    def result(self):
        return None if self.results is None else self.results[0]

    def __iter__(self):
        import functools
        import shutil
        import threading

        if not can_stream():
            raise RuntimeError("Stream needs a process that may fork (bounds.can_stream())")
        bounds = Bounds.from_environment()
        scratch = Path(tempfile.mkdtemp(prefix="expc-eval-"))
        children, data = [], []  # (pid, None, result file, done read end); data read ends
        for part in range(self.ways):
            function = self.function if self.ways == 1 else functools.partial(self.function, part=(part, self.ways))
            result_file, stderr = scratch / f"result-{part}.pickle", scratch / f"stderr-{part}"
            data_r, data_w = os.pipe()
            done_r, done_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                for fd in [data_r, done_r, *data, *(c[3] for c in children)]:  # the other children's too
                    os.close(fd)
                if self.fresh:
                    _exec_stream_child(function, self.args, data_w, done_w, result_file, bounds, stderr, self.ways)
                _stream_child(function, self.args, data_w, result_file, bounds, stderr)
            os.close(data_w)
            os.close(done_w)
            children.append((pid, None, result_file, done_r))
            data.append(data_r)
        busy, outcome = [0.0], []
        watcher = threading.Thread(target=lambda: outcome.append(_watch_all(children, bounds, busy=lambda: busy[0])),
                                   daemon=True)
        watcher.start()
        readers = [os.fdopen(fd, "rb", buffering=1 << 16) for fd in data]
        limit, verdict, index = bounds.output_mib * 2 ** 20, None, 0
        try:
            while True:
                reader = readers[index % self.ways]
                head = reader.read(4)
                size = int.from_bytes(head, "big") if len(head) == 4 else 0
                if size > limit:
                    verdict = ("output", size)
                    break
                record = reader.read(size) if len(head) == 4 else b""
                if len(head) < 4 or len(record) < size:
                    verdict = "ended"  # the child is done, or was stopped: the watcher says which
                    break
                start = time.monotonic()
                yield record
                busy[0] += time.monotonic() - start
                index += 1
        finally:
            for reader in readers:
                reader.close()  # a child still writing gets a broken pipe
            if verdict != "ended" and watcher.is_alive():  # stopped early: a record too big, or the caller quit
                for pid, *_ in children:
                    try:
                        os.kill(pid, 9)
                    except ProcessLookupError:
                        pass
            watcher.join()
            for child in children:
                os.close(child[3])
            try:
                if verdict is not None:  # not when the caller quit: its own error is on its way
                    kind, figure = outcome[0] if verdict == "ended" else verdict
                    if kind != "exited":  # a bound: each child's result would say the same
                        _result((kind, figure), children[0][2], bounds, self.where)
                    self.results = [_result((kind, status), child[2], bounds, self.where)
                                    for child, status in zip(children, figure)]
            finally:
                shutil.rmtree(scratch, ignore_errors=True)


# Go's collector settings for the stream child, unless the user's environment sets them.
# go-jsonnet's runtime reads its environment from the process' start (the stack, not `environ`),
# so they reach it only through a fresh interpreter (Stream(fresh=True), _exec_stream_child);
# set in this process they would be ignored, as GOMEMLIMIT once was. GOMEMLIMIT: a
# 100,000-member sweep's evaluation keeps some 5 KB a member (the sweep object, its names), and
# under this soft limit go collects harder as it nears it. GOGC: each member leaves kilobytes of
# garbage and keeps none; go's default (collect when the heap has doubled) collected every few
# members, and at 400 the child spent 1.5 ms of CPU a member instead of 2.1 (docs/reliability.md).
# A lower GOGC instead collected all the time and made a 20,000-member build 1.6x slower.
# 576 MiB, not 640: as fast, and a 100,000-member zip's build 936 MB at its peak, not 1,003.
STREAM_GO_MEMORY_MIB = 576
STREAM_GO_GC_PERCENT = 400


def _exec_stream_child(function, args, write_fd: int, done_fd: int, result_file: Path, bounds: Bounds,
                       stderr: Path, ways: int = 1) -> None:
    """In the forked child: become a fresh interpreter with go's settings in its environment,
    the same pid (the watcher's), the same pipes, then run _stream_child. Returns only if the
    exec failed, to run it here instead."""
    import json

    call = result_file.with_suffix(".call")
    try:
        call.write_bytes(pickle.dumps((function, args, bounds)))
        env = dict(os.environ)
        # the children share one budget
        env.setdefault("GOMEMLIMIT", f"{min(STREAM_GO_MEMORY_MIB, int(bounds.memory_gib * 1024 / 2)) // ways}MiB")
        env.setdefault("GOGC", str(STREAM_GO_GC_PERCENT))
        for fd in (write_fd, done_fd):
            os.set_inheritable(fd, True)
        code = ("import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
                "from expc.compile.bounds import _fresh_stream_child; _fresh_stream_child(*sys.argv[2:])")
        os.execve(sys.executable, [sys.executable, "-c", code, json.dumps(sys.path), str(write_fd), str(result_file),
                                   str(stderr), str(call)], env)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        return


def _fresh_stream_child(write_fd: str, result_file: str, stderr: str, call: str) -> None:
    function, args, bounds = pickle.loads(Path(call).read_bytes())
    _stream_child(function, args, int(write_fd), Path(result_file), bounds, Path(stderr))


def _stream_child(function, args, write_fd: int, result_file: Path, bounds: Bounds, stderr: Path) -> None:
    out = os.fdopen(write_fd, "wb", buffering=1 << 16)

    def emit(record: bytes) -> None:
        out.write(len(record).to_bytes(4, "big"))
        out.write(record)

    def streamed(*args):
        value = function(*args, emit=emit)
        out.flush()
        return value

    _child(streamed, args, {}, result_file, bounds, stderr)


_CONTEXT = None
# A child's exit status when a signal other than an out-of-memory abort ended it: an engine bug.
CRASH_SIGNALS = {-11: "SIGSEGV", -7: "SIGBUS", -4: "SIGILL"}


def _may_fork() -> bool:
    """A plain fork is safe (and fastest) with one thread and without go's runtime in the process."""
    import threading

    return hasattr(os, "fork") and "_gojsonnet" not in sys.modules and threading.active_count() == 1


def _forkserver():
    """multiprocessing's fork server: one fresh interpreter, started on first use, that forks each
    child. Forking this process is not safe once go's runtime is loaded in it (an explain, a
    test run), and a fresh interpreter per evaluation costs a tenth of a second."""
    global _CONTEXT
    if _CONTEXT is None:
        import multiprocessing

        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["expc.compile.evaluate"])
    return _CONTEXT


def _quiet(path: Path) -> None:
    """The child's stderr to a file: go prints its whole stack when it aborts out of memory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)


def _child(function, args, kwargs, result_file: Path, bounds: Bounds, stderr: Path, cwd: str | None = None) -> None:
    os.environ[_IN_CHILD] = "1"
    if cwd:  # the fork server's children start where the server did, not where the caller is
        os.chdir(cwd)
    _quiet(stderr)
    code = 0
    try:
        _limit_address_space(bounds)
        try:
            value = ("ok", function(*args, **kwargs))
        except ExpcError as err:
            value = ("error", err.problems)
        except BaseException:  # noqa: BLE001 - a bug, whatever it is: its traceback travels back
            value = ("bug", traceback.format_exc())
        result_file.write_bytes(pickle.dumps(value))
    except BaseException:  # noqa: BLE001 - the parent reports a child that left no result
        code = 70
    finally:
        sys.stdout.flush()
        os._exit(code)


def _limit_address_space(bounds: Bounds) -> None:
    """A backstop behind the resident-memory watch: twice the bound plus room for the
    interpreter and go's reservations, so a burst between two looks cannot run far."""
    try:
        import resource
    except ImportError:
        return
    limit = int((2 * bounds.memory_gib + 2) * 2 ** 30)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _watch(pid: int, process, result_file: Path, bounds: Bounds, done: int, busy=None) -> tuple[str, object]:
    """Wait for the child, killing it past a bound: ("exited", status) or (bound name, figure).
    `done` becomes readable (end of file) the moment the child exits. `busy()`: the seconds the
    parent has spent on what the child handed over (a stream's records), which the time bound
    leaves out."""
    kind, figure = _watch_all([(pid, process, result_file, done)], bounds, busy)
    return (kind, figure[0]) if kind == "exited" else (kind, figure)


def _watch_all(children: list[tuple], bounds: Bounds, busy=None) -> tuple[str, object]:
    """_watch for children of one evaluation, (pid, process, result file, done) each, bounded
    together (their memory summed): ("exited", [status, ...]) once all have exited, or
    (bound name, figure) once they are all killed."""
    import select

    start, interval = time.monotonic(), 0.005
    memory_limit, output_limit = bounds.memory_gib * 2 ** 30, bounds.output_mib * 2 ** 20
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    peak, statuses = 0, [None] * len(children)
    while True:
        for i, (pid, process, _, _) in enumerate(children):
            if statuses[i] is not None:
                continue
            if process is not None:
                if not process.is_alive():
                    process.join()
                    statuses[i] = process.exitcode
            else:
                exited, status = os.waitpid(pid, os.WNOHANG)
                if exited:
                    statuses[i] = os.waitstatus_to_exitcode(status)
        running = [child for child, status in zip(children, statuses) if status is None]
        if not running:
            return "exited", statuses
        peak = max(peak, sum(_resident(pid, page) for pid, *_ in running))
        elapsed = time.monotonic() - start - (busy() if busy else 0.0)
        over = ("memory", peak) if peak > memory_limit else ("time", elapsed) if elapsed > bounds.seconds else None
        if over is None:
            sizes = [f.stat().st_size for _, _, f, _ in running if f.exists()]
            over = ("output", max(sizes)) if sizes and max(sizes) > output_limit else None
        if over:
            for pid, process, *_ in running:
                _kill(pid, process)
            return over
        select.select([done for *_, done in running], [], [], interval)
        interval = min(interval * 2, 0.02)


def _resident(pid: int, page: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * page
    except (OSError, IndexError, ValueError):
        return 0


def _kill(pid: int, process) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process is not None:
        process.join()
    else:
        os.waitpid(pid, 0)


class MemoryBoundPassed(ExpcError):
    """The evaluation used more memory than its bound (and was stopped)."""


def _result(outcome: tuple, result_file: Path, bounds: Bounds, where: str | None = None):
    kind, figure = outcome
    if kind == "memory":
        raise MemoryBoundPassed(f"evaluating the spec used more than {bounds.memory_gib:g} GiB of memory (the bound) "
                                "and was stopped; a spec that needs more can raise it with EXPC_EVAL_MEMORY_GIB=8",
                                where)
    if kind == "time":
        raise ExpcError(f"evaluating the spec ran past {bounds.seconds:g} s (the bound) and was stopped; a spec that "
                        "needs longer can raise it with EXPC_EVAL_SECONDS=900", where)
    if not result_file.exists() and figure in CRASH_SIGNALS:
        # rjsonnet overflows its stack on a value nested some 100,000 deep (go-jsonnet stops at 500).
        raise ExpcError(f"the Jsonnet engine crashed evaluating the spec ({CRASH_SIGNALS[figure]}), most likely "
                        "on a recursion or a value nested too deep for its stack", where)
    if not result_file.exists():
        # Killed from within: go's runtime aborts when the address-space backstop is hit.
        raise ExpcError(f"evaluating the spec ran out of memory (bound: {bounds.memory_gib:g} GiB, exit status "
                        f"{figure}); a spec that needs more can raise it with EXPC_EVAL_MEMORY_GIB=8", where)
    if kind == "output" or result_file.stat().st_size > bounds.output_mib * 2 ** 20:
        raise ExpcError(f"the spec's result is over {bounds.output_mib:g} MiB (the bound); a sweep that big can "
                        "raise it with EXPC_EVAL_OUTPUT_MIB=4096", where)
    status, value = pickle.loads(result_file.read_bytes())
    if status == "ok":
        return value
    if status == "error":
        raise ExpcError(value)
    raise RuntimeError(f"evaluation failed in its child process:\n{value}")
