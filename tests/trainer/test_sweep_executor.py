"""`expc run SPEC --parallel 2` on a real two-member sweep through the real deepspeed launcher:
stopped mid-sweep (SIGTERM to the executor: every member saves and stops), rerun (both resume),
killed with SIGKILL while its members train (they carry on alone), rerun (it waits for them and
trains nothing itself), rerun once more (nothing to do). The same runs feed `expc report`'s test
(below), through the module-scoped fixture `sweep`.

Each member is 2 CPU processes; master ports come from 29760-29799.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import BIN, LAUNCH_TIMEOUT, make_project
from .conftest import test_env as launch_env

SPEC = """\
local expc = import 'expc.libsonnet';
expc.sweep.grid(expc.experiment + expc.zero.stage(0) + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  data: { source: 'synthetic', val_fraction: 0.1 },
  global_batch_size:: 4,
  micro_batch_size:: 2,
  train+: { max_steps: %d, log_interval: 10, eval_interval: 100, eval_iters: 2, checkpoint_interval: 100,
            keep_checkpoints: 1, sample_tokens: 0 },
}, { lr: ['1e-2', '3e-3'] })
"""
STEPS = 500


@dataclass
class Sweep:
    project: Path
    digests: dict  # member name -> digest
    outputs: list  # (exit status, stdout) of each executor run, in order
    resumed_from: dict  # member -> the step the second run resumed from

    def run_dir(self, member: str) -> Path:
        return self.project / "runs" / self.digests[member]


def executor(project: Path, port: int, **popen) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "expc"), "run", "specs/pair.jsonnet", "--parallel", "2", "--master-port",
                             str(port)], cwd=project, env=launch_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def wait_for(condition, what: str, timeout: float = LAUNCH_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def trained_lines(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return sum('"loss"' in line for line in path.read_text().splitlines()) if path.is_file() else 0


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Sweep:
    project = make_project(tmp_path_factory.mktemp("sweep"))
    (project / "specs" / "pair.jsonnet").write_text(SPEC % STEPS)
    built = subprocess.run([str(BIN / "expc"), "build", "specs/pair.jsonnet", "--json"], cwd=project,
                           env=launch_env(), capture_output=True, text=True, check=True)
    digests = {row["member"]: row["digest"] for row in json.loads(built.stdout)}
    runs = [project / "runs" / d for d in digests.values()]
    outputs = []

    # 1. stopped once both members train
    first = executor(project, 29760)
    wait_for(lambda: all(trained_lines(r) >= 1 for r in runs), "both members to log a step")
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=LAUNCH_TIMEOUT)
    outputs.append((first.returncode, out))

    # 2. rerun: both resume; killed (SIGKILL) once both launches are under way
    second = executor(project, 29770)
    wait_for(lambda: all("resuming" in (r / "logs" / "executor.log").read_text() for r in runs),
             "both members to resume")
    second.kill()
    out, _ = second.communicate(timeout=60)
    outputs.append((second.returncode, out))

    # 3. rerun while the killed executor's members still train: it waits for them
    third = executor(project, 29780)
    out, _ = third.communicate(timeout=LAUNCH_TIMEOUT)
    outputs.append((third.returncode, out))

    # 4. once more: nothing to do
    fourth = executor(project, 29790)
    out, _ = fourth.communicate(timeout=120)
    outputs.append((fourth.returncode, out))
    # the latest launch of each member is the second executor's resume
    resumed_from = {m: json.loads((project / "runs" / d / "metadata.json").read_text()).get("resumed_from")
                    for m, d in digests.items()}
    return Sweep(project, digests, outputs, resumed_from)


def test_a_stopped_sweep_saves_every_member_and_says_how_to_continue(sweep):
    code, out = sweep.outputs[0]
    assert code == 130, out
    assert "stopped: run the same command again to continue where it stopped" in out
    # both ran at once, on their own master ports
    assert f"lr=1e-2: running, step -/{STEPS}, loss -, eta - port 2976" in out
    assert f"lr=3e-3: running, step -/{STEPS}, loss -, eta - port 2976" in out
    ports = {line.rsplit("port ", 1)[1] for line in out.splitlines() if ": running," in line and "port" in line}
    # distinct, from the given one up (a port another program holds is passed over)
    assert len(ports) == 2 and all(29760 <= int(p) < 29770 for p in ports), ports


def test_the_rerun_resumes_each_member_from_its_checkpoint(sweep):
    for member, step in sweep.resumed_from.items():
        assert step is not None and 0 < step < STEPS, (member, step)
        log = (sweep.run_dir(member) / "logs" / "executor.log").read_text()
        assert f"resuming {sweep.digests[member][:12]} from step {step} of {STEPS} (preempted)" in log


def test_a_killed_executor_is_continued_by_the_next_without_training_twice(sweep):
    code, out = sweep.outputs[2]
    assert code == 0, out
    assert "lr=1e-2: running elsewhere" in out and "lr=3e-3: running elsewhere" in out
    assert out.rstrip().endswith("sweep pair: 2 of 2 completed (2 already were)")
    for member in sweep.digests:
        meta = json.loads((sweep.run_dir(member) / "metadata.json").read_text())
        assert (meta["status"], meta["step"], meta["attempt"]) == ("completed", STEPS, 1)
        # one launch per executor run that trained it: the first, and the second's (killed) one
        assert (sweep.run_dir(member) / "logs" / "launcher.log").read_text().count("cmd = ") == 2
        assert (sweep.run_dir(member) / "logs" / "executor.log").read_text().count(" completed: step ") == 1


def test_a_finished_sweep_trains_nothing(sweep):
    code, out = sweep.outputs[3]
    assert code == 0
    lines = out.splitlines()
    assert lines[-1] == "sweep pair: 2 of 2 completed (2 already were)"
    assert [line.split(", loss")[0] for line in lines[-3:-1]] == [
        f"lr=1e-2: completed (cached), step {STEPS}/{STEPS}", f"lr=3e-3: completed (cached), step {STEPS}/{STEPS}"]
    assert "running" not in out
    for member in sweep.digests:  # no launch was made: the logs are as the third run left them
        assert (sweep.run_dir(member) / "logs" / "launcher.log").read_text().count("cmd = ") == 2


def test_members_share_a_wandb_group_named_after_the_sweep(sweep):
    from .wandb_records import read_records

    for member in sweep.digests:
        # one offline folder per launch (the first, the resume), all of one W&B run
        files = sorted((sweep.run_dir(member) / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 2
        for record_file in files:
            run = next(r.run for r in read_records(record_file) if r.HasField("run"))
            assert (run.run_id, run.display_name, run.run_group) == (f"expc-{sweep.digests[member][:16]}", member, "pair")
            config = {item.key: json.loads(item.value_json) for item in run.config.update}
            assert config["sweep"] == {"sweep": "pair", "member": member,
                                       "axes": {"lr": {"lr=1e-2": 0.01, "lr=3e-3": 0.003}[member]}}
            # the manifest is the rest of the config, unchanged: the digest is not touched
            manifest = json.loads((sweep.run_dir(member) / "manifest.json").read_text())
            assert {k: v for k, v in config.items() if k not in ("sweep", "_wandb")} == manifest


# --- expc report on the same runs -------------------------------------------------------------

def report(project: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "expc"), "report", target], cwd=project, env=launch_env(), capture_output=True,
                          text=True, timeout=120, check=False)


def test_report_files_and_their_content(sweep):
    import base64
    import csv

    done = report(sweep.project, "specs/pair.jsonnet")
    assert done.returncode == 0, done.stderr
    folder = sweep.project / "reports" / "pair"
    assert sorted(p.name for p in folder.iterdir()) == ["loss_curves.png", "metric_vs_axes.png", "report.html",
                                                        "results.csv"]
    # the metric, read here from each run's own metrics.jsonl
    final = {}
    for member in sweep.digests:
        records = [json.loads(line) for line in (sweep.run_dir(member) / "metrics.jsonl").read_text().splitlines()]
        final[member] = [r["val_loss"] for r in records if "val_loss" in r][-1]
    ranked = sorted(final, key=final.get)
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert [r["member"] for r in rows] == ranked
    assert [(r["rank"], r["lr"], r["digest"], r["steps"], r["tokens"], r["status"]) for r in rows] == [
        (str(i + 1), m.split("=")[1], sweep.digests[m], str(STEPS), str(STEPS * 4 * 32), "completed")  # 4 x 32 tokens
        for i, m in enumerate(ranked)]
    assert [float(r["final_val_loss"]) for r in rows] == [round(final[m], 4) for m in ranked]
    best = ranked[0]
    assert f"best: {best} ({sweep.digests[best][:12]}), final validation loss {final[best]:.4f}" in done.stdout
    page = (folder / "report.html").read_text()
    assert f"manifests/{sweep.digests[best]}.json" in page and "<td>lr=1e-2</td>" in page
    # the plots are in the page itself, byte for byte
    for name in ("loss_curves.png", "metric_vs_axes.png"):
        png = (folder / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert base64.b64encode(png).decode() in page
    # by name, and again: the same bytes
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert report(sweep.project, "pair").returncode == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# --- early stopping: a member pruned for real, then let go on by a looser rule -------------------

STOPPED = """\
local expc = import 'expc.libsonnet';
local one = expc.sweep.grid(expc.experiment + expc.zero.stage(0) + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  data: { source: 'synthetic', val_fraction: 0.1 },
  global_batch_size:: 4,
  micro_batch_size:: 2,
  train+: { max_steps: %d, log_interval: 10, eval_interval: 100, eval_iters: 2, checkpoint_interval: 400,
            keep_checkpoints: 1, sample_tokens: 0 },
}, { lr: ['1e-2'] });
expc.sweep.stop_when(one, [expc.sweep.threshold('val_loss', %s, 100)])
"""


@pytest.fixture(scope="module")
def pruning(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("pruning"))
    (project / "specs" / "strict.jsonnet").write_text(STOPPED % (STEPS, "0.5"))  # always above: stops
    (project / "specs" / "loose.jsonnet").write_text(STOPPED % (STEPS, "1000"))

    def run(spec: str, port: int):
        done = subprocess.run([str(BIN / "expc"), "run", spec, "--parallel", "1", "--master-port", str(port)],
                              cwd=project, env=launch_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
                              check=False)
        return done.returncode, done.stdout + done.stderr

    outputs = [run("specs/strict.jsonnet", 29795)]
    (run_dir,) = (project / "runs").iterdir()
    after_prune = {"metadata": json.loads((run_dir / "metadata.json").read_text()),
                   "decisions": json.loads((run_dir / "early_stopping.json").read_text()),
                   "records": [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()],
                   "checkpoints": sorted(p.parent.name for p in (run_dir / "checkpoints").glob("step_*/complete"))}
    outputs.append(run("specs/strict.jsonnet", 29796))
    outputs.append(run("specs/loose.jsonnet", 29797))
    return project, run_dir, outputs, after_prune


def test_a_member_over_the_threshold_is_pruned_with_its_decision_recorded(pruning):
    _, _, outputs, after = pruning
    code, out = outputs[0]
    assert code == 0, out
    assert out.rstrip().endswith("sweep strict: 0 of 1 completed (0 already were), 1 pruned")
    (decision,) = after["decisions"]
    value = next(r["val_loss"] for r in after["records"] if r["step"] == 100 and "val_loss" in r)
    assert decision == {"rule": "stop if val_loss > 0.5 at step 100", "step": 100, "value": value, "stop": True,
                        "comparison": f"val_loss {value:.4f} > 0.5 at step 100", "sweep": "strict",
                        "member": "lr=1e-2"}
    assert "lr=1e-2: pruned, step " in out and f"(val_loss {value:.4f} > 0.5 at step 100)" in out
    # stopped soon after the decision, with a checkpoint to resume from
    assert after["metadata"]["status"] == "pruned" and 100 <= after["metadata"]["step"] < STEPS
    assert after["checkpoints"] == [f"step_{after['metadata']['step']:08d}"]


def test_the_same_rule_keeps_it_pruned_and_a_looser_one_resumes_it(pruning):
    _, run_dir, outputs, after = pruning
    code, out = outputs[1]
    assert code == 0 and "lr=1e-2: pruned" in out and "running" not in out, out
    code, out = outputs[2]
    assert code == 0, out
    assert out.rstrip().endswith("sweep loose: 1 of 1 completed (0 already were)")
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert (meta["status"], meta["step"], meta["resumed_from"]) == ("completed", STEPS, after["metadata"]["step"])
