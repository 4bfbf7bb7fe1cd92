"""Bounded evaluation: a spec that eats memory, spins, or returns a huge result stops with one
clear error naming the bound and how to raise it, exit 1, nothing written, the machine unharmed.
The bounds are made small here so each case ends in a second or two."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from expc.compile.pipeline import compile_spec
from expc.errors import ExpcError

ROOT = Path(__file__).resolve().parent.parent
BASE = """local expc = import 'expc.libsonnet';
local one = expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug,
                                data: expc.data.synthetic() };
"""
HOSTILE = {
    # 100M characters, as tags: go-jsonnet grew to 24 GB on this before bounds existed
    "memory": BASE + "local s = std.repeat('x', 100000000); one + { logging+: { wandb+: { tags: [s] } } }",
    # 2^40 calls
    "time": BASE + "local f(n) = if n == 0 then 0 else 1 + f(n - 1) + f(n - 1); one + { seed: f(40) }",
    # a 3 MB result
    "output": BASE + "{ ['m%d' % i]: one + { seed: i, logging+: { wandb+: { tags: [std.repeat('t', 3000)] } } }"
                     " for i in std.range(1, 1000) }",
}
# One small bound per case; the others stay at their defaults, so each case meets its own.
BOUNDS = {"memory": {"EXPC_EVAL_MEMORY_GIB": "0.5"}, "time": {"EXPC_EVAL_SECONDS": "2"},
          "output": {"EXPC_EVAL_OUTPUT_MIB": "1"}}
MESSAGES = {
    "memory": "error: specs/memory.jsonnet: evaluating the spec used more than 0.5 GiB of memory (the bound) and was stopped; a spec "
              "that needs more can raise it with EXPC_EVAL_MEMORY_GIB=8\n",
    "time": "error: specs/time.jsonnet: evaluating the spec ran past 2 s (the bound) and was stopped; a spec that needs longer can "
            "raise it with EXPC_EVAL_SECONDS=900\n",
    "output": "error: specs/output.jsonnet: the spec's result is over 1 MiB (the bound); a sweep that big can raise it with "
              "EXPC_EVAL_OUTPUT_MIB=4096\n",
}


@pytest.fixture
def hostile(project):
    for name, text in HOSTILE.items():
        (project / "specs" / f"{name}.jsonnet").write_text(text)
    return project


@pytest.mark.parametrize("bound", ["memory", "time", "output"])
def test_the_command_line_stops_at_each_bound(hostile, bound):
    """`expc build` forks its evaluation (go-jsonnet is not loaded in the command's process)."""
    env = {**os.environ, **BOUNDS[bound]}
    result = subprocess.run([sys.executable, "-m", "expc", "build", f"specs/{bound}.jsonnet"], cwd=hostile,
                            env=env, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", MESSAGES[bound])
    assert not (hostile / "manifests").exists()


def test_in_a_process_that_already_runs_go_jsonnet(hostile, monkeypatch):
    """Here (go-jsonnet loaded by earlier tests) the child comes from the fork server."""
    import _gojsonnet  # noqa: F401 - loaded, so this process may not be forked

    for name, value in BOUNDS["memory"].items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ExpcError) as info:
        compile_spec(hostile / "specs" / "memory.jsonnet")
    assert f"error: {info.value.render()}\n" == MESSAGES["memory"]
    # The same process goes on evaluating specs that stay within the bounds.
    (hostile / "specs" / "fine.jsonnet").write_text(BASE + "one")
    assert len(compile_spec(hostile / "specs" / "fine.jsonnet")) == 1


def test_the_bounds_are_checked(hostile, monkeypatch):
    monkeypatch.setenv("EXPC_EVAL_SECONDS", "soon")
    with pytest.raises(ExpcError, match=r"EXPC_EVAL_SECONDS='soon': expected a number"):
        compile_spec(hostile / "specs" / "time.jsonnet")
    monkeypatch.setenv("EXPC_EVAL_SECONDS", "0")
    with pytest.raises(ExpcError, match=r"EXPC_EVAL_SECONDS='0': expected a number above 0"):
        compile_spec(hostile / "specs" / "time.jsonnet")


def test_the_watcher_sleeps_between_looks(monkeypatch, tmp_path):
    """The watcher looks at the child's memory every 5-20 ms, waiting on the child's end-of-life
    pipe in between. It once waited on standard input instead (the pipe's variable reused for
    waitpid's answer), so with stdin at /dev/null it spun and took the build's core: a
    5,000-member streamed build went from 3.0 to 2.5 ms a member once it waited on the pipe."""
    import time

    from expc.compile import bounds

    looks = []
    resident = bounds._resident
    monkeypatch.setattr(bounds, "_resident", lambda pid, page: looks.append(pid) or resident(pid, page))
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        time.sleep(0.5)
        os._exit(0)
    os.close(done_w)  # the child holds its copy until it exits, as a bounded child does
    saved_stdin, null = os.dup(0), os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # stdin always readable
    start = time.monotonic()
    try:
        outcome = bounds._watch(pid, None, tmp_path / "result", bounds.Bounds.from_environment(), done_r)
    finally:
        elapsed = time.monotonic() - start
        os.dup2(saved_stdin, 0)
        for fd in (saved_stdin, null, done_r):
            os.close(fd)
    assert outcome == ("exited", 0)
    # Waiting, it looks 25 to 200 times a second (go's runtime, once loaded in this process by an
    # earlier test, cuts some waits short: 137 looks in 0.5 s seen); spinning, 36,000.
    assert len(looks) < 50 + 1000 * elapsed, f"{len(looks)} looks in {elapsed:.1f} s: the watcher does not wait"


def _own_environment(emit):
    with open("/proc/self/environ", "rb") as environ:  # as the process started: what go reads
        emit(environ.read())


@pytest.mark.parametrize("user", [None, "150"], ids=["defaults", "the-users-own"])
def test_a_fresh_stream_child_starts_with_gos_settings(monkeypatch, user):
    """go-jsonnet's runtime reads its environment from the process' start, not from os.environ:
    a long stream's child is a fresh interpreter with GOGC and GOMEMLIMIT in it (or the user's)."""
    from expc.compile import bounds

    if user:
        monkeypatch.setenv("GOGC", user)
    code = ("import sys; sys.path[:0] = sys.argv[1:]; from expc.compile import bounds; "
            "from tests.test_bounds import _own_environment; "
            "[record] = list(bounds.Stream(_own_environment, fresh=True)); sys.stdout.buffer.write(record)")
    out = subprocess.run([sys.executable, "-c", code, *sys.path], capture_output=True, check=True).stdout
    settings = dict(v.split(b"=", 1) for v in out.split(b"\0") if v.startswith(b"GO"))
    assert settings[b"GOGC"] == (user or str(bounds.STREAM_GO_GC_PERCENT)).encode()
    assert settings[b"GOMEMLIMIT"] == f"{bounds.STREAM_GO_MEMORY_MIB}MiB".encode()


def _counted(emit, part=(0, 1), hold_mib=0):
    """Records part[0], part[0] + part[1], ... below 10; holding `hold_mib` of memory a while."""
    import time

    held = bytearray(hold_mib * 2 ** 20)
    held[::4096] = b"x" * len(held[::4096])  # resident, not only reserved
    if hold_mib:
        time.sleep(3)
    for n in range(part[0], 10, part[1]):
        emit(str(n).encode())
    return part


def test_a_stream_split_between_two_runs_gives_the_records_in_turn_and_bounds_their_sum():
    """Stream(ways=2): run i makes records i, i + 2, ...; they are read in turn, so the order is
    one run's. The memory bound is the two runs' together: each holds 300 MiB, under a bound of
    0.5 GiB that either alone keeps."""
    code = ("import functools, sys; sys.path[:0] = sys.argv[1:]; from expc.compile import bounds; "
            "from expc.errors import ExpcError; from tests.test_bounds import _counted; "
            "stream = bounds.Stream(_counted, ways=2); print([int(r) for r in stream], stream.results); "
            "alone = bounds.Stream(functools.partial(_counted, hold_mib=300)); print(len(list(alone))); "
            "both = bounds.Stream(functools.partial(_counted, hold_mib=300), ways=2, where='specs/x.jsonnet')\n"
            "try:\n    list(both)\nexcept ExpcError as err:\n    print(err.render())")
    out = subprocess.run([sys.executable, "-c", code, *sys.path], capture_output=True, text=True,
                         env={**os.environ, "EXPC_EVAL_MEMORY_GIB": "0.5"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9] [(0, 2), (1, 2)]", "10",
        "specs/x.jsonnet: evaluating the spec used more than 0.5 GiB of memory (the bound) and was stopped; "
        "a spec that needs more can raise it with EXPC_EVAL_MEMORY_GIB=8"]
