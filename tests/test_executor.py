"""The sweep executor's decisions without training: completed members are skipped, a failed one
is retried only on request, GPUs are named with --include, and the CLI refuses what --parallel
cannot do. The real launches are in tests/trainer/test_sweep_executor.py."""
from __future__ import annotations

import json

import pytest

from expc.cli import main
from expc.compile import build
from expc.launch.executor import Executor, members_of, sweep_names

SPEC = """local expc = import 'expc.libsonnet';
expc.sweep.grid(expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.%s, model: expc.models.gpt_debug, data: expc.data.synthetic(),
  global_batch_size:: 8, micro_batch_size:: 2,
}, { lr: ['1e-3', '2e-3'] })
"""


def cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


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
    (["--retry-failed"], "--retry-failed goes with --parallel N"),
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
