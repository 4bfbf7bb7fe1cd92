"""A real `expc search`: three trials of a debug GPT on 2 CPU ranks each, through the real
deepspeed launcher, one at a time. Stopped (SIGTERM) while trial 1 trains, then run again: the
numbers go on, trial 1 resumes from its checkpoint, trial 0 is not trained again, and trial 2 is
what the sampler proposes from trials 0 and 1's real results. A third run trains nothing.

Four launches (about two minutes here): behind `slow`. Master ports come from 29800-29839.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from expc.compile.write import read_index
from expc.launch.search import Search
from expc.project import Project

from .conftest import BIN, LAUNCH_TIMEOUT, make_project
from .conftest import test_env as launch_env

STEPS = 300
SPEC = """\
local expc = import 'expc.libsonnet';
function(lr=1e-2)
  expc.search.declare(expc.experiment + expc.zero.stage(0) + {
    hardware: expc.hardware.cpu_laptop,
    model: expc.models.gpt_debug,
    data: { source: 'synthetic', val_fraction: 0.1 },
    global_batch_size:: 4,
    micro_batch_size:: 2,
    lr:: lr,
    train+: { max_steps: %d, log_interval: 10, eval_interval: 100, eval_iters: 2, checkpoint_interval: 20,
              keep_checkpoints: 1, sample_tokens: 0 },
  }, space={ lr: expc.search.log_uniform(1e-3, 3e-2) }, trials=3, seed=7, startup_trials=2)
""" % STEPS


def search(project: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "expc"), "search", "specs/lr.jsonnet", "--parallel", "1", "--master-port",
                             str(port)], cwd=project, env=launch_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def trial_digests(project: Path) -> dict[int, str]:
    return {n: d for d, e in read_index(Project(project))["manifests"].items() for s in e["sources"]
            for n in s.get("search", {}).get("lr", [])}


def trained(run_dir: Path) -> bool:
    path = run_dir / "metrics.jsonl"
    return path.is_file() and '"loss"' in path.read_text()


@pytest.mark.slow
def test_a_search_stopped_mid_trial_continues_with_the_same_numbers_and_proposals(tmp_path):
    project = make_project(tmp_path / "search")
    (project / "specs" / "lr.jsonnet").write_text(SPEC)
    runs = project / "runs"

    # 1. stopped while trial 1 trains
    first = search(project, 29800)
    deadline = time.monotonic() + 2 * LAUNCH_TIMEOUT
    while not (1 in trial_digests(project) and trained(runs / trial_digests(project)[1])):
        assert time.monotonic() < deadline and first.poll() is None, "trial 1 never started training"
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=LAUNCH_TIMEOUT)
    assert first.returncode == 130, out
    assert "stopped: run the same command again to continue where it stopped" in out
    digests = trial_digests(project)
    assert sorted(digests) == [0, 1]
    status = {n: json.loads((runs / d / "metadata.json").read_text())["status"] for n, d in digests.items()}
    assert status == {0: "completed", 1: "preempted"}

    # 2. continued: trial 1 resumes, trial 2 is proposed from 0 and 1's results, trial 0 is cached
    second = search(project, 29810)
    out, _ = second.communicate(timeout=3 * LAUNCH_TIMEOUT)
    assert second.returncode == 0, out
    digests = trial_digests(project)
    assert sorted(digests) == [0, 1, 2]
    assert out.count("trial 2 proposed: manifests/") == 1 and "trial 0 proposed" not in out
    meta = {n: json.loads((runs / d / "metadata.json").read_text()) for n, d in digests.items()}
    assert [m["status"] for m in meta.values()] == ["completed"] * 3
    resumed = meta[1]["resumed_from"]
    assert 0 < resumed < STEPS
    assert f"resuming {digests[1][:12]} from step {resumed} of {STEPS} (preempted)" in \
        (runs / digests[1] / "logs" / "executor.log").read_text()
    assert (runs / digests[0] / "logs" / "launcher.log").read_text().count("cmd = ") == 1  # trained once
    s = Search(project / "specs" / "lr.jsonnet", Project(project))
    trials = s.trials()
    # trial 2's arguments are the pure function of (seed, 2, the real results of trials 0 and 1)
    assert trials[2].tla == s.propose(2, trials[:2])
    finals = {t.number: t.value for t in trials}
    best = min(finals, key=finals.get)
    assert f"search lr: 3 of 3 trials finished; best: trial {best} (" in out
    assert f"val_loss {finals[best]:.4f}, manifests/{digests[best]}.json" in out

    # 3. once more: the budget is spent and every trial is cached
    third = search(project, 29820)
    out, _ = third.communicate(timeout=120)
    assert third.returncode == 0, out
    assert out.count("completed (cached)") == 3 and "proposed" not in out
