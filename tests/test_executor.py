"""The sweep executor's decisions without training: completed members are skipped, a failed one
is retried only on request, GPUs are named with --include, and the CLI refuses what --parallel
cannot do. The real launches are in tests/trainer/test_sweep_executor.py."""
from __future__ import annotations

import json

import pytest

from expc.compile import build
from expc.launch.executor import Executor, members_of, sweep_names

from .conftest import run_cli as cli

SPEC = """local expc = import 'expc.libsonnet';
expc.sweep.grid(expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.%s, model: expc.models.gpt_debug, data: expc.data.synthetic(),
  global_batch_size:: 8, micro_batch_size:: 2,
}, { lr: ['1e-3', '2e-3'] })
"""


@pytest.fixture
def built(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.delenv("EXPC_RUNS_DIR", raising=False)
    (project / "specs" / "pair.jsonnet").write_text(SPEC % "cpu_laptop")
    return build([project / "specs" / "pair.jsonnet"])


def fake_run(project, digest: str, status: str) -> None:
    """A run folder as a finished launch leaves it (metadata and metrics only)."""
    folder = project / "runs" / digest
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"status": status, "step": 50}))
    (folder / "metrics.jsonl").write_text('{"step": 50, "loss": 4.25, "elapsed": 3.0}\n')


def test_members_are_named_by_the_build_and_the_sweep_by_its_spec(built, project):
    names, sweep = sweep_names([str(m.path) for m in built], built)
    assert (sorted(names.values()), sweep) == (["lr=1e-3", "lr=2e-3"], "pair")
    # given as manifests, the index names them
    assert sweep_names([m.digest[:12] for m in built], []) == (names, "pair")
    members = members_of([str(m.path) for m in built], names, None)
    assert [(m.name, m.axes) for m in members] == [("lr=1e-3", {"lr": 0.001}), ("lr=2e-3", {"lr": 0.002})]


def test_completed_members_are_skipped_and_a_failed_one_waits_for_retry_failed(built, project, capsys):
    fake_run(project, built[0].digest, "completed")
    fake_run(project, built[1].digest, "failed")
    code, out, err = cli(["run", "specs/pair.jsonnet", "--parallel", "2"], capsys)
    assert code == 1, err
    assert out.splitlines()[2:] == [
        "lr=1e-3: completed (cached), step 50/50, loss 4.2500, eta -",
        "lr=2e-3: failed (skipped), step 50/50, loss 4.2500, eta -",
        "sweep pair: 1 of 2 completed (1 already were), 1 failed",
        (f"  failed: lr=2e-3 ({built[1].digest[:12]}): see runs/{built[1].digest}/logs/executor.log; "
         "`--retry-failed` runs it again"),
    ]
    assert not (project / "runs" / built[1].digest / "logs").exists()  # nothing was launched
    names, sweep = sweep_names([str(m.path) for m in built], built)
    retry = Executor(members_of([str(m.path) for m in built], names, None), 2, sweep, retry_failed=True)
    retry.classify()
    assert [m.state for m in retry.members] == ["cached", "queued"]


@pytest.mark.parametrize("args, message", [
    (["--parallel", "2", "--dry-run"], ("--parallel runs members on this machine, choosing their ports and devices; "
                                        "it takes no --dry-run, --rerun, --devices or multi-node options")),
    (["--retry-failed"], "--retry-failed goes with --parallel N or --launcher slurm"),
    (["--devices", "0"], "--devices places one run; for several, --parallel N chooses each member's devices"),
    (["--devices", "a"], "--devices 'a': expected GPU numbers separated by commas, e.g. 0,1"),
])
def test_refusals(built, capsys, args, message):
    code, _, err = cli(["run", "specs/pair.jsonnet", *args], capsys)
    assert (code, err) == (1, f"error: {message}\n")


def test_devices_are_named_with_include_on_gpus_and_refused_on_cpu(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    (project / "specs" / "gpu.jsonnet").write_text(SPEC % "a100_40gb_x1")
    gpu = build([project / "specs" / "gpu.jsonnet"])[0]
    code, out, err = cli(["run", gpu.digest[:12], "--devices", "3", "--dry-run"], capsys)
    assert code == 0, err
    assert " --include localhost:3 --master_port 29500 " in out and "--num_gpus" not in out
    code, _, err = cli(["run", gpu.digest[:12], "--devices", "2,3", "--dry-run"], capsys)
    assert err == "error: --devices gives 2 distinct GPU(s); the manifest runs 1 process(es), one per GPU\n"
    (project / "specs" / "cpu.jsonnet").write_text(SPEC % "cpu_laptop")
    cpu = build([project / "specs" / "cpu.jsonnet"])[0]
    code, _, err = cli(["run", cpu.digest[:12], "--devices", "0", "--dry-run"], capsys)
    assert err == "error: --devices names GPUs, but the manifest trains on CPU (cpu_laptop)\n"


# --- early stopping: the threshold rule -------------------------------------------------------

RECORDS = [{"step": 0, "val_loss": 5.5}, {"step": 50, "loss": 4.0}, {"step": 100, "val_loss": 4.2},
           {"step": 200, "val_loss": 3.9}]


def test_threshold_decides_at_the_first_record_at_or_after_its_step():
    from expc.compile.stopping import Threshold, first_stop

    assert Threshold("val_loss", 4.0, 100).decide(RECORDS) == {
        "rule": "stop if val_loss > 4 at step 100", "step": 100, "value": 4.2, "stop": True,
        "comparison": "val_loss 4.2000 > 4 at step 100"}
    assert Threshold("val_loss", 4.0, 150).decide(RECORDS)["comparison"] == "val_loss 3.9000 <= 4 at step 200"
    assert Threshold("val_loss", 4.0, 300).decide(RECORDS) is None  # not there yet
    assert first_stop([Threshold("val_loss", 4.5, 100), Threshold("loss", 3.0, 10)], RECORDS)["rule"] == (
        "stop if loss > 3 at step 10")
    assert first_stop([Threshold("val_loss", 4.5, 100)], RECORDS) is None


STOP = """local expc = import 'expc.libsonnet';
expc.sweep.stop_when(import 'pair.jsonnet', [expc.sweep.threshold('val_loss', %s, 100)])
"""


def test_rules_are_beside_the_sweep_and_in_no_digest(built, project, capsys):
    from expc.compile.stopping import Threshold, read_rules
    from expc.project import Project

    (project / "specs" / "stop.jsonnet").write_text(STOP % "4.0")
    assert read_rules(project / "specs" / "stop.jsonnet", Project(project)) == [Threshold("val_loss", 4.0, 100)]
    assert read_rules(project / "specs" / "pair.jsonnet", Project(project)) == []
    assert [m.digest for m in build([project / "specs" / "stop.jsonnet"])] == [m.digest for m in built]
    (project / "specs" / "bad.jsonnet").write_text(STOP.replace("'val_loss'", "'accuracy'") % "4.0")
    with pytest.raises(Exception) as caught:
        read_rules(project / "specs" / "bad.jsonnet", Project(project))
    assert caught.value.render() == ("specs/bad.jsonnet: early_stopping[0]: metric must be one of val_loss, loss, "
                                     "got 'accuracy'")


def test_a_pruned_member_goes_on_only_when_the_new_rules_let_it(built, project):
    from expc.compile.stopping import Threshold

    fake_run(project, built[0].digest, "pruned")
    (project / "runs" / built[0].digest / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    names, sweep = sweep_names([str(m.path) for m in built], built)

    def state(rules):
        executor = Executor(members_of([str(built[0].path)], names, None), 1, sweep)
        executor.members[0].rules = rules
        executor.classify()
        return executor.members[0].state

    assert state([Threshold("val_loss", 4.0, 100)]) == "pruned"
    assert state([Threshold("val_loss", 4.5, 100)]) == "queued"  # resumes from its checkpoint
    assert state([]) == "queued"


def curve(*values, every: int = 100) -> list[dict]:
    return [{"step": i * every, "val_loss": v} for i, v in enumerate(values)]


def test_median_rule_is_optunas_median_pruner():
    from expc.compile.stopping import Median, Peer

    completed = [Peer(c, completed=True) for c in (curve(5.0, 4.0, 3.0), curve(5.0, 4.2, 3.2), curve(5.0, 4.4, 3.4),
                                                   curve(5.0, 4.6, 3.6), curve(5.0, 4.8, 3.8))]
    rule = Median()  # 5 startup trials, no warm-up
    # fewer than 5 completed: no decision at all
    assert rule.decide(curve(5.0, 9.0), completed[:4]) is None
    # its best so far (4.5) is worse than the median at step 100 (4.4): stopped
    assert rule.decide(curve(5.0, 4.5), completed) == {
        "rule": "stop if the best val_loss is worse than the median of completed members (after 5)",
        "step": 100, "value": 4.5, "stop": True, "comparison": "best val_loss 4.5000 > median 4.4000 of 5 completed "
                                                               "at step 100"}
    assert rule.decide(curve(5.0, 4.4), completed)["stop"] is False  # equal to the median: kept
    # the best value so far counts, not the latest
    assert rule.decide(curve(5.0, 4.1, 3.9), completed)["comparison"] == (
        "best val_loss 3.9000 > median 3.4000 of 5 completed at step 200")
    # a step no completed member reported: no decision; before the warm-up: none either
    assert rule.decide(curve(5.0, 4.5, every=150), completed) is None
    assert Median(warmup=200).decide(curve(5.0, 9.0), completed) is None
    # members still running are no comparison; a record without the metric decides nothing live
    assert rule.decide(curve(5.0, 4.5), [Peer(p.records) for p in completed]) is None
    assert rule.decide(curve(5.0, 4.5) + [{"step": 110, "loss": 3.0}], completed) is None


def test_a_median_rule_in_a_spec(built, project):
    from expc.compile.stopping import Median, read_rules
    from expc.project import Project

    (project / "specs" / "median.jsonnet").write_text(
        "local expc = import 'expc.libsonnet';\nexpc.sweep.stop_when(import 'pair.jsonnet', [expc.sweep.median()])\n")
    assert read_rules(project / "specs" / "median.jsonnet", Project(project)) == [Median("val_loss", 5, 0)]


def test_the_executor_compares_with_the_completed_members_of_its_sweep(project, monkeypatch):
    from expc.compile.stopping import Median

    monkeypatch.chdir(project)
    (project / "specs" / "six.jsonnet").write_text(SPEC.replace("['1e-3', '2e-3']", "[1, 2, 3, 4, 5, 6]")
                                                   % "cpu_laptop")
    six = build([project / "specs" / "six.jsonnet"])
    for m, loss in zip(six[:5], (3.0, 3.2, 3.4, 3.6, 3.8)):
        fake_run(project, m.digest, "completed")
        (project / "runs" / m.digest / "metrics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in curve(5.0, loss)))
    fake_run(project, six[5].digest, "pruned")
    names, sweep = sweep_names([str(m.path) for m in six], six)

    def state_of_last(last_loss: float) -> str:
        (project / "runs" / six[5].digest / "metrics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in curve(5.0, last_loss)))
        executor = Executor(members_of([str(m.path) for m in six], names, None), 1, sweep)
        for member in executor.members:
            member.rules = [Median()]
        executor.classify()
        return [m.state for m in executor.members]

    assert state_of_last(3.5) == ["cached"] * 5 + ["pruned"]  # worse than the median, 3.4
    assert state_of_last(3.3) == ["cached"] * 5 + ["queued"]  # better: it goes on


def test_gpu_members_get_disjoint_devices_and_wait_for_free_ones(project, monkeypatch):
    from expc.launch.executor import free_devices

    monkeypatch.chdir(project)
    (project / "specs" / "gpus.jsonnet").write_text(SPEC % "a100_40gb_x1")
    members = members_of([str(m.path) for m in build([project / "specs" / "gpus.jsonnet"])], {}, None)
    members[0].devices = (0,)
    assert free_devices([0, 1, 2], members[:1], 1) == (1,)
    assert free_devices([0, 1, 2], members[:1], 2) == (1, 2)
    assert free_devices([0, 1], members[:1], 2) is None  # waits
    members[1].devices = (1,)
    assert free_devices([0, 1], members[:2], 1) is None
    # a member needing more GPUs than the machine shows is refused before anything starts
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(Exception) as caught:
        Executor(members, 2, "gpus")
    assert caught.value.render() == f"{members[0].digest[:12]} runs 1 processes, one per GPU; this machine shows 0 GPU(s)"


def test_the_live_table_on_a_terminal(built, project):
    import io

    from rich.console import Console

    from expc.launch.executor import LiveTable

    fake_run(project, built[0].digest, "completed")
    names, sweep = sweep_names([str(m.path) for m in built], built)
    terminal = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)
    executor = Executor(members_of([str(m.path) for m in built], names, None), 2, sweep, console=terminal)
    executor.classify()
    executor.members[1].state, executor.members[1].step, executor.members[1].loss = "running", 20, 3.5
    executor.members[1].eta = "0:01:05"
    with LiveTable(executor) as table:
        table.refresh()
    text = terminal.file.getvalue()
    assert "sweep pair" in text
    for cells in (["member", "status", "step", "loss", "eta"], ["lr=1e-3", "completed (cached)", "50/50", "4.2500"],
                  ["lr=2e-3", "running", "20/50", "3.5000", "0:01:05"]):
        assert any(all(c in line for c in cells) for line in text.splitlines()), (cells, text)


def asha_sweep(project):
    """A four-member sweep under successive halving (min_resource 10): three peers in their
    folders (one completed, one running, one pruned earlier), the fourth queued."""
    from expc.compile.stopping import SuccessiveHalving

    (project / "specs" / "four.jsonnet").write_text(SPEC.replace("['1e-3', '2e-3']", "[1, 2, 3, 4]") % "cpu_laptop")
    four = build([project / "specs" / "four.jsonnet"])
    for m, status, values in zip(four[:3], ("completed", "running", "pruned"), ((4.0, 3.0), (4.1,), (4.2,))):
        fake_run(project, m.digest, status)
        (project / "runs" / m.digest / "metrics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in curve(5.0, *values, every=10)))
    names, sweep = sweep_names([str(m.path) for m in four], four)
    executor = Executor(members_of([str(m.path) for m in four], names, None), 1, sweep)
    for member in executor.members:
        member.rules = [SuccessiveHalving(min_resource=10)]
    executor.classify()
    return executor


def start_standing_in(member, records, resumed_at=0):
    """The member "running": a real process in place of its `expc run`, and its metrics file."""
    import subprocess

    from expc.launch.run import MetricsFollower

    (member.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (member.run_dir / "metadata.json").write_text(json.dumps({"status": "running", "step": resumed_at}))
    member.proc = subprocess.Popen(["sleep", "60"])
    member.follower, member.state, member.resumed_at = MetricsFollower(member.run_dir / "metrics.jsonl", 0), \
        "running", resumed_at
    (member.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_successive_halving_stops_a_running_member_against_every_other_members_folder(project, monkeypatch):
    """The live path: a member (here a real process standing in for its `expc run`) writes two
    records at once, the first completing rung 0 with a value worse than the members that
    reached it before; the executor judges that record (not only the latest), sends SIGTERM and,
    once the process is gone, records the decision and `pruned` in the member's folder."""
    from expc.launch.executor import PlainLines

    monkeypatch.chdir(project)
    executor = asha_sweep(project)
    member = executor.members[3]
    assert member.state == "queued"
    start_standing_in(member, curve(5.0, 4.3, 4.25, every=10))
    display = PlainLines(executor)
    executor._poll(display)
    assert member.pruning["rung"] == 0 and member.proc.wait(timeout=10) == -15
    executor._poll(display)
    assert member.state == "pruned"
    (decision,) = json.loads((member.run_dir / "early_stopping.json").read_text())
    assert decision == {
        "rule": "successive halving on val_loss (min_resource 10, reduction factor 4, min early-stopping rate 0)",
        "rung": 0, "step": 10, "value": 4.3, "stop": True,
        "comparison": "val_loss 4.3000 at step 10 > 4.0000: not among the best 1 of 4 members at rung 0 (step >= 10)",
        "sweep": "four", "member": "lr=4"}
    assert json.loads((member.run_dir / "metadata.json").read_text())["status"] == "pruned"


def test_a_resumed_member_is_not_judged_again_on_the_rungs_it_passed(project, monkeypatch):
    """Resumed at step 20, a member's file is read again from the top: the rung it passed at
    step 10 (when it led) is not judged again against the members that arrived since; its
    next rung, at step 40, is."""
    from expc.launch.executor import PlainLines

    monkeypatch.chdir(project)
    executor = asha_sweep(project)
    member = executor.members[3]
    start_standing_in(member, curve(5.0, 4.3, 4.0, every=10), resumed_at=20)
    display = PlainLines(executor)
    executor._poll(display)
    assert member.pruning is None and member.proc.poll() is None
    completed = executor.members[0]
    with open(completed.run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 40, "val_loss": 3.5}) + "\n")
    with open(member.run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 40, "val_loss": 3.9}) + "\n")
    executor._poll(display)
    # rung 1 (step 40): the completed member's 3.5 and this member's 3.9: the best 1 of 2 goes on
    assert member.pruning["comparison"] == ("val_loss 3.9000 at step 40 > 3.5000: not among the best 1 of 2 members "
                                            "at rung 1 (step >= 40)")
    assert member.proc.wait(timeout=10) == -15
