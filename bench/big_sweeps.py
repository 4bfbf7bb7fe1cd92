"""Build time, peak memory and index size of big sweeps, and what a later one-spec build pays.

    .venv/bin/python bench/big_sweeps.py [--sizes 1000,10000] [--index 10000,100000] [--profile N] [--child N]
                                         [--split N] [--plot PNG] [--helpers N]

For each size N, a scratch project (this lib, specs/tiny.jsonnet) gets
`expc.sweep.grid(tiny, { seed: std.range(1, N) })` as specs/big.jsonnet, built by `expc build`
in a fresh process. Figures per row: wall and CPU seconds (the build and its evaluation
children), milliseconds a member, the peak memory of the build's process tree (proportional set
size, sampled every 50 ms, the build and its evaluation children summed), the index's bytes on
disk, the wall time of `expc build specs/tiny.jsonnet` afterwards in the same project, the best
of three (what every later build pays for an index that big), and the machine's steal time
meanwhile (on a shared virtual machine, how much of a slow run was the neighbours'). With
--plot PNG, the time and memory curves are drawn into that file too.

--index N,... measures the index alone: record N sources of one spec (tiny manifests), then
record one manifest of another spec, the best of five; with the single manifests/index.json of
earlier versions that second write read and rewrote the whole index.

--profile N builds an N-member sweep in this process under cProfile, evaluation in process
(EXPC_IN_BOUNDED_EVALUATION=1, so the profiler sees it), and prints the seconds a member spent
in each stage. Run it on a quiet machine: the figures are wall times.

--child N times the evaluation child's side of a streamed N-member build in this process: the
stream's Jsonnet as built, then with one part taken out at a time (the knob probe, the fresh
copy of the sweep each member is indexed on), then the names alone; each member handed to a
callback that drops it. What the child spends a member, and on what: process CPU time (go's
collector threads included), which a busy machine blurs less than wall.

--helpers N builds N members (rounded down to a multiple of 4) with each of the lib's sweep
helpers in turn, `expc build` in a fresh process as for --sizes: a grid over seed, a grid over
seed and four learning rates written as strings, grid_derived, zip, random and replicas.

--split N streams an N-member build in this process and splits its CPU time between the build
and its evaluation child (getrusage of this process, and of its reaped children): which side
is the bottleneck.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPC = Path(sys.executable).parent / "expc"
SWEEP = """local expc = import 'expc.libsonnet';
expc.sweep.grid(import 'tiny.jsonnet', { seed: std.range(1, %d) })
"""


# --helpers: each of the lib's sweep helpers making N members of tiny (N a multiple of 4)
HELPERS = {
    "grid, seed": SWEEP.replace("{", "{{").replace("}", "}}").replace("%d", "{n}"),
    "grid, seed x 4 lr strings": "local expc = import 'expc.libsonnet';\n"
    "expc.sweep.grid(import 'tiny.jsonnet', {{ seed: std.range(1, {q}), lr: ['1e-4', '3e-4', '1e-3', '3e-3'] }})\n",
    "grid_derived, seed x 4 max_steps": "local expc = import 'expc.libsonnet';\n"
    "expc.sweep.grid_derived(import 'tiny.jsonnet',\n"
    "  {{ seed: std.range(1, {q}), 'train.max_steps': [200, 400, 800, 1600] }},\n"
    "  {{ warmup_steps: function(v) v['train.max_steps'] / 10 }})\n",
    "zip, seed and max_steps": "local expc = import 'expc.libsonnet';\n"
    "expc.sweep.zip(import 'tiny.jsonnet',\n"
    "  {{ seed: std.range(1, {n}), 'train.max_steps': std.range(101, {n} + 100) }})\n",
    "random, log-uniform lr and int seed": "local expc = import 'expc.libsonnet';\n"
    "expc.sweep.random(import 'tiny.jsonnet', {{ lr: expc.sweep.log_uniform(1e-4, 1e-2),\n"
    "  seed: expc.sweep.int_uniform(1, 1000000000) }}, {n}, 0)\n",
    "replicas of a 4-lr grid": "local expc = import 'expc.libsonnet';\n"
    "expc.sweep.replicas(expc.sweep.grid(import 'tiny.jsonnet', {{ lr: ['1e-4', '3e-4', '1e-3', '3e-3'] }}), {q})\n",
}


def scratch_project(folder: Path, members: int, spec: str | None = None) -> Path:
    shutil.copytree(ROOT / "lib", folder / "lib")
    (folder / "specs").mkdir()
    shutil.copy(ROOT / "specs" / "tiny.jsonnet", folder / "specs" / "tiny.jsonnet")
    (folder / "specs" / "big.jsonnet").write_text(spec or SWEEP % members)
    return folder


def measured(command: list[str], cwd: Path) -> tuple[float, float, float, float]:
    """(wall s, CPU s of the command and its children, peak MB of its process tree, steal s: the
    time the hypervisor gave this machine's cores to others meanwhile, all cores summed)."""
    import psutil

    stolen = _steal()
    before = os.times()
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            # PSS, not RSS: the evaluation child is a fork, and RSS would count the pages it
            # shares with the build twice. Read from smaps_rollup, every 50 ms: psutil's full
            # memory info reads every mapping, and took a third of a core at 20 ms.
            peak = max(peak, sum(_pss(p.pid) for p in [watched, *watched.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - start
    after = os.times()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, peak / 2**20, _steal() - stolen


def _steal() -> float:
    """Seconds of steal time so far (/proc/stat): on a shared virtual machine, the figure that
    says how much of a slow run was the neighbours'."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return next(int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def index_bytes(project: Path) -> int:
    folder = project / "manifests" / "index"
    legacy = project / "manifests" / "index.json"  # an expc of the earlier layout
    files = list(folder.rglob("*")) if folder.is_dir() else []
    return sum(p.stat().st_size for p in files + [legacy] if p.is_file())


def row(members: int, spec: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="expc-big-sweep-") as folder:
        project = scratch_project(Path(folder), members, spec)
        wall, cpu, peak, steal = measured([str(EXPC), "build", "specs/big.jsonnet"], project)
        # the best of three: one small build is short enough for a busy machine to blur
        later = min(measured([str(EXPC), "build", "specs/tiny.jsonnet"], project)[0] for _ in range(3))
        return {"members": members, "wall": wall, "cpu": cpu, "peak": peak, "index": index_bytes(project),
                "later": later, "steal": steal}


def table_line(r: dict) -> str:
    n = r["members"]
    return (f"| {n:,} | {r['wall']:.1f} | {r['cpu']:.1f} | {1000 * r['wall'] / n:.2f} | {1000 * r['cpu'] / n:.2f} "
            f"| {r['peak']:.0f} | {r['index']:,} | {r['later']:.2f} | {r['steal']:.1f} |")


def plot(rows: list[dict], path: Path) -> None:
    """The curves: wall and CPU ms a member, and peak MB, against members, with the targets."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from expc.compile.pipeline import TWO_RUNS_UP_TO

    members = [r["members"] for r in rows]
    figure = Figure(figsize=(9, 3.6), dpi=100)
    time_axes, memory_axes = figure.subplots(1, 2)
    time_axes.plot(members, [1000 * r["wall"] / r["members"] for r in rows], "o-", label="wall")
    time_axes.plot(members, [1000 * r["cpu"] / r["members"] for r in rows], "s--", label="CPU (both cores)")
    time_axes.axhline(1.0, color="grey", linestyle=":", label="target, wall")
    time_axes.set(xscale="log", xlabel="members", ylabel="ms a member", ylim=(0, None), title="build time")
    memory_axes.plot(members, [r["peak"] for r in rows], "o-")
    memory_axes.axhline(1000, color="grey", linestyle=":", label="target")
    memory_axes.set(xscale="log", xlabel="members", ylabel="MB (PSS, build and children)", ylim=(0, None),
                    title="peak memory")
    for axes in (time_axes, memory_axes):
        # where the build goes from two evaluation runs to one (bench at the sizes either side)
        axes.axvline(TWO_RUNS_UP_TO, color="grey", linestyle="--", linewidth=0.8, label="two runs up to here")
        axes.legend(loc="lower right")
        axes.grid(True, alpha=0.3)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path), metadata={"Software": None})


def index_cost(members: int) -> str:
    from expc.compile import Manifest
    from expc.compile.write import write
    from expc.project import Project

    imports = ["lib/expc.libsonnet", "lib/sweep.libsonnet", "specs/tiny.jsonnet", "lib/experiment.libsonnet"]
    with tempfile.TemporaryDirectory(prefix="expc-index-") as folder:
        project = Project(Path(folder))
        sweep = [Manifest({"seed": i}, f"{i:064x}", "specs/big.jsonnet", f"seed={i}", {}, [], imports)
                 for i in range(members)]
        write(sweep, project)
        one = Manifest({"seed": 0}, "f" * 64, "specs/tiny.jsonnet", None, {}, [], imports)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            write([one], project)
            times.append(time.perf_counter() - start)
        return f"| {members:,} | {index_bytes(project.root):,} | {1000 * min(times):.1f} |"


def profile(members: int) -> None:
    import cProfile
    import pstats

    os.environ["EXPC_IN_BOUNDED_EVALUATION"] = "1"
    from expc.compile import build
    from expc.project import Project

    with tempfile.TemporaryDirectory(prefix="expc-big-sweep-") as folder:
        project = Project(scratch_project(Path(folder), members))
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.runcall(build, [project.specs / "big.jsonnet"], project=project)
        total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    stages = {  # stage -> (file, function) whose cumulative time is that stage's
        "evaluate (go-jsonnet: sweep, knob probe)": ("~", "_gojsonnet.evaluate"),
        "knobs (their check, in Python)": ("knobs.py", "problems"),
        "pin": ("pin.py", "pin"),
        "validate": ("validate.py", "validate"),
        "canonicalize (round floats)": ("canonical.py", "canonicalize"),
        "digest (JCS bytes, sha256)": ("canonical.py", "digest"),
        "write (pretty bodies, files, index)": ("write.py", "write"),
        "  of which the index": ("write.py", "update_index"),
    }
    print(f"{members} members: {total:.2f} s, {1000 * total / members:.2f} ms a member")
    for stage, (where, function) in stages.items():
        seconds = sum(cumulative for (file, _, name), (_, _, _, cumulative, _) in stats.items()
                      if file.endswith(where) and (name == function or (where == "~" and function in name)))
        print(f"  {stage:<42} {seconds:6.2f} s  {1000 * seconds / members:5.2f} ms a member")


def child_cost(members: int) -> None:
    from expc.compile import bounds

    if "GOGC" not in os.environ:  # go reads them at the process' start: as the stream child has them
        os.execve(sys.executable, [sys.executable, *sys.argv], {
            **os.environ, "GOGC": str(bounds.STREAM_GO_GC_PERCENT), "GOMEMLIMIT": f"{bounds.STREAM_GO_MEMORY_MIB}MiB"})
    os.environ["EXPC_IN_BOUNDED_EVALUATION"] = "1"  # go-jsonnet in this process, for the timing
    from expc.compile import evaluate
    from expc.project import Project

    built = evaluate.HAND_OVER
    each = {  # the stream's own hand-over, then with one part taken out
        "as built (fresh copy, knob probe)": built,
        "without the knob probe": built.replace("std.manifestJsonMinified(p.sent)", "'null'"),
        "indexed on the sweep itself": built.replace("(value + {})[m]", "value[m]"),
        "the names alone": "if emit(m, m) then last else error 'not handed over'",
    }
    assert len(set(each.values())) == len(each), "the stream's hand-over changed: update these variants"
    with tempfile.TemporaryDirectory(prefix="expc-big-sweep-") as folder:
        project = Project(scratch_project(Path(folder), members))
        spec = (project.specs / "big.jsonnet").resolve()
        for label, hand_over in each.items():
            code = evaluate.stream_code(evaluate.value_code(spec, {}, [], []), "emit", hand_over)
            start = time.process_time()
            evaluate._snippet(spec, "<stream>", code, evaluate.Importer(spec, project), max_trace=20,
                              native_callbacks={"emit": (("name", "text"), lambda name, text: True),
                                                "emit_read": (("length",), lambda length: True)})
            print(f"  {label:<40} {1000 * (time.process_time() - start) / members:5.2f} ms of CPU a member", flush=True)


def cpu_split(members: int) -> None:
    import resource

    from expc.compile import build
    from expc.project import Project

    with tempfile.TemporaryDirectory(prefix="expc-big-sweep-") as folder:
        project = Project(scratch_project(Path(folder), members))
        start = time.perf_counter()
        with open(os.devnull) as nothing:  # as in CI: the watcher must not mistake stdin for its pipe
            os.dup2(nothing.fileno(), 0)
            build([project.specs / "big.jsonnet"], project=project)
        wall = time.perf_counter() - start
    own, child = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    per = 1000 / members
    print(f"{members} members: {wall * per:.2f} ms a member (wall); the build {own.ru_utime * per:.2f} ms user + "
          f"{own.ru_stime * per:.2f} ms system CPU, its evaluation children {child.ru_utime * per:.2f} + "
          f"{child.ru_stime * per:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated member counts")
    parser.add_argument("--profile", type=int, metavar="N", help="profile an N-member build instead")
    parser.add_argument("--child", type=int, metavar="N", help="time the evaluation child's parts instead")
    parser.add_argument("--index", metavar="N,...", help="measure the index alone, at these sizes")
    parser.add_argument("--split", type=int, metavar="N", help="split an N-member build's CPU time instead")
    parser.add_argument("--helpers", type=int, metavar="N", help="build N members with each of the lib's sweep helpers")
    parser.add_argument("--plot", metavar="PNG", help="with --sizes: draw the curves into this file too")
    args = parser.parse_args()
    if args.split:
        cpu_split(args.split)
        return
    if args.helpers:
        n = args.helpers - args.helpers % 4
        print("| helper | members | wall s | wall ms/member | CPU ms/member | peak MB | steal s |")
        print("|---|---|---|---|---|---|---|")
        for label, spec in HELPERS.items():
            r = row(n, spec.format(n=n, q=n // 4))
            print(f"| {label} | {n:,} | {r['wall']:.1f} | {1000 * r['wall'] / n:.2f} | {1000 * r['cpu'] / n:.2f} "
                  f"| {r['peak']:.0f} | {r['steal']:.1f} |", flush=True)
        return
    if args.index:
        print("| sources in the index | index bytes | then writing one other spec's manifest, ms |")
        print("|---|---|---|")
        for size in [int(s) for s in args.index.split(",")]:
            print(index_cost(size), flush=True)
        return
    if args.child:
        child_cost(args.child)
        return
    if args.profile:
        profile(args.profile)
        return
    print("| members | wall s | CPU s | wall ms/member | CPU ms/member | peak MB | index bytes "
          "| later one-spec build, s | steal s |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        rows.append(row(size))
        print(table_line(rows[-1]), flush=True)
    if args.plot:
        plot(rows, Path(args.plot))


if __name__ == "__main__":
    main()
