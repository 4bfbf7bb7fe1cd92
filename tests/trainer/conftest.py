"""Shared launches for the trainer tests. One 2-rank DeepSpeed launch costs 10-30 s here, so the
runs are made once per session and many tests read the same run directories.

Every launch goes through the real `deepspeed` launcher (through `expc run`, or the plain command
its plan prints) on CPU with a debug-size GPT on synthetic data. Master ports come from
29520 on (or $EXPC_TEST_PORT on), a fresh one per launch.
"""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# EXPC_TEST_PORT moves the range, for two checkouts testing side by side on one machine
PORTS = itertools.count(int(os.environ.get("EXPC_TEST_PORT", 29520)))
LAUNCH_TIMEOUT = 240

# A debug-size experiment; the ZeRO stage and the step count are filled in per test.
SPEC = """\
local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage({stage}) + {{
  hardware: expc.hardware.{hardware},
  model: expc.models.gpt_debug {{ dropout: {dropout} }},
  data: {data},
  global_batch_size:: 8,
  micro_batch_size:: 2,
  lr:: 1e-2,
  deepspeed+: {monitor},
  train+: {{
    max_steps: {max_steps},
    log_interval: {log_interval},
    eval_interval: {eval_interval},
    eval_iters: 2,
    checkpoint_interval: {checkpoint_interval},
    keep_checkpoints: 2,
    sample_tokens: {sample_tokens},
  }},
}}
"""


def test_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["EXPC_DIST_TIMEOUT_S"] = "120"  # a dead peer must not block the others for 30 minutes
    return env


def make_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "lib", folder / "lib")
    (folder / "specs").mkdir()
    return folder


def build_spec(project: Path, name: str, stage: int = 2, max_steps: int = 20, dropout: float = 0.1,
               monitors: bool = False, hardware: str = "cpu_laptop",
               data: str = "{ source: 'synthetic', val_fraction: 0.1 }", sample_tokens: int = 0,
               log_interval: int = 5, checkpoint_interval: int = 10) -> Path:
    """Write specs/<name>.jsonnet and compile it; return the manifest's path. With monitors,
    DeepSpeed's own CSV and TensorBoard monitors write under monitor/<name>/ and
    tensorboard/<name>/ in the project."""
    from expc.compile import build

    spec = project / "specs" / f"{name}.jsonnet"
    monitor = (f"{{ csv_monitor: {{ enabled: true, output_path: 'monitor/', job_name: '{name}' }}, "
               f"tensorboard: {{ enabled: true, output_path: 'tensorboard/', job_name: '{name}' }} }}"
               if monitors else "{}")
    spec.write_text(SPEC.format(stage=stage, max_steps=max_steps, dropout=dropout, monitor=monitor,
                                eval_interval=max_steps // 2, hardware=hardware, data=data,
                                sample_tokens=sample_tokens, log_interval=log_interval,
                                checkpoint_interval=checkpoint_interval))
    (manifest,) = build([spec])
    return project / "manifests" / f"{manifest.digest}.json"


def kill_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """kill -9 of a launch's whole process group, then wait until none of it is left (the ranks
    hold the port and files)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            return


def kill_while_saving(proc: subprocess.Popen, checkpoints: Path, after_step: int) -> dict:
    """kill -9 a plain launch's whole group in the middle of writing a checkpoint newer than
    `after_step`: poll for its `.partial` folder, freeze the group (SIGSTOP) the moment it
    appears, and kill if the folder is still there; if the save finished meanwhile, let the
    run go on to its next checkpoint. Returns what was on disk at the kill."""
    from trainer.rundir import PARTIAL, latest_step

    missed = 0
    while True:
        wait_for(lambda: latest_step(checkpoints) >= after_step, proc, what=f"the checkpoint of step {after_step}")
        partials = []
        while not partials:  # a save takes some tens of milliseconds here: poll fast
            if proc.poll() is not None:
                pytest.fail(f"the launch ended before a checkpoint write could be caught ({missed} missed)")
            partials = [e.name for e in os.scandir(checkpoints) if e.name.endswith(PARTIAL)]
            time.sleep(0.001)
        os.killpg(proc.pid, signal.SIGSTOP)
        partial = checkpoints / partials[0]
        if partial.is_dir():
            seen = {"partial": partial.name, "written": sorted(p.name for p in partial.iterdir()),
                    "latest_step": latest_step(checkpoints), "missed": missed,
                    "latest": (checkpoints / "latest").read_text()}
            kill_group(proc)
            return seen
        missed += 1  # it was renamed into place between the poll and the stop
        os.killpg(proc.pid, signal.SIGCONT)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def start(command: list, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process in its own session, so a timeout (or a test's kill) reaches its whole group and
    never another test's launch."""
    return subprocess.Popen([str(c) for c in command], cwd=cwd, env={**test_env(), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = LAUNCH_TIMEOUT) -> Result:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s: {proc.args}\n{out[-2000:]}\n{err[-3000:]}")
    return Result(proc.returncode, out, err)


def expc(*args, cwd: Path, timeout: float = LAUNCH_TIMEOUT) -> Result:
    return finish(start([BIN / "expc", *args], cwd), timeout)


def expc_run(manifest: Path, *args, cwd: Path) -> Result:
    return expc("run", manifest, "--master-port", next(PORTS), *args, cwd=cwd)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = LAUNCH_TIMEOUT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the launch ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def final_weights(run_dir: Path) -> dict:
    """The model weights of the newest checkpoint (ZeRO 0-2 keep them whole on rank 0's file)."""
    import torch

    from trainer.rundir import checkpoint_tags

    tag = checkpoint_tags(run_dir / "checkpoints")[-1]
    state = torch.load(run_dir / "checkpoints" / tag / "mp_rank_00_model_states.pt", weights_only=False,
                       map_location="cpu")
    return state["module"]


def train_records(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the fields that measure time (those differ from run to run)."""
    import json

    timing = {"elapsed", "tokens_per_s", "mfu"}
    return [{k: v for k, v in json.loads(line).items() if k not in timing}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@dataclass
class StageRun:
    stage: int
    manifest: Path
    run_dir: Path
    result: Result


STAGE_STEPS = 60


@pytest.fixture(scope="session")
def stage_runs(tmp_path_factory) -> dict[int, StageRun]:
    """The same experiment at ZeRO stages 0-3, each trained once through `expc run`; two at a
    time, as two digests on two ports (which is also the test that concurrent runs of different
    digests both complete)."""
    project = make_project(tmp_path_factory.mktemp("stages"))
    runs = {}
    for pair in ((0, 1), (2, 3)):
        started = {}
        for stage in pair:
            manifest = build_spec(project, f"stage{stage}", stage=stage, max_steps=STAGE_STEPS, monitors=stage == 1)
            started[stage] = manifest, start([BIN / "expc", "run", manifest, "--master-port", next(PORTS)], project)
        for stage, (manifest, proc) in started.items():
            runs[stage] = StageRun(stage, manifest, project / "runs" / manifest.stem, finish(proc))
    return runs
