"""`expc search` without training: proposals from the real Optuna TPE sampler, trials compiled,
written and indexed for real; results fed by writing run folders as the trainer writes them
(metadata.json's status, metrics.jsonl's val_loss records). A real search, trained, is in
tests/trainer/test_search.py."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from expc.cli import cli
from expc.compile.write import read_index
from expc.launch.search import Search
from expc.project import Project

SPEC = """local expc = import 'expc.libsonnet';

function(lr=3e-4, steps=20, mbs=2)
  expc.search.declare(
    expc.experiment + expc.zero.stage1 + expc.presets.quick_test + {
      hardware: expc.hardware.cpu_laptop,
      model: expc.models.gpt_debug,
      data: expc.data.synthetic(),
      global_batch_size:: 4,
      micro_batch_size:: mbs,
      lr:: lr,
      train+: { max_steps: steps, eval_interval: 10 },
    },
    space=%(space)s,
    %(options)s
  )
"""
SPACE = "{ lr: expc.search.log_uniform(1e-4, 1e-1), steps: expc.search.int(10, 80, step=10) }"
OPTIONS = "trials=6, seed=3, startup_trials=2"


def write_spec(project: Path, space: str = SPACE, options: str = OPTIONS, name: str = "s.jsonnet") -> Path:
    path = project / "specs" / name
    path.write_text(SPEC % {"space": space, "options": options})
    return path


def score(tla: dict) -> float:
    """A made-up validation loss with its best at lr=3e-3, steps=50: what a trial 'trained' to."""
    return round(1 + (math.log10(tla["lr"]) + 2.5) ** 2 + ((tla["steps"] - 50) / 40) ** 2, 6)


def fake_result(project: Path, digest: str, tla: dict, status: str = "completed", metric: str = "val_loss",
                value: float | None = None) -> None:
    """The run folder as the trainer leaves it, without training."""
    run = project / "runs" / digest
    run.mkdir(parents=True, exist_ok=True)
    (run / "metadata.json").write_text(json.dumps({"digest": digest, "status": status, "step": tla["steps"]}))
    value = score(tla) if value is None else value
    lines = [{"step": 10, metric: value + 1}, {"step": tla["steps"], metric: value}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def run_trials(project: Path, count: int, results=fake_result) -> list[dict]:
    """`count` trials, one after another: propose (a fresh Search, its state rebuilt from the
    index and the run folders, as every `expc search` rebuilds it), then the trial's result."""
    proposed = []
    for _ in range(count):
        manifest = Search(project / "specs" / "s.jsonnet", Project(project)).next_trial()
        results(project, manifest.digest, manifest.tla)
        proposed.append({"trial": manifest.search[1], "tla": manifest.tla, "digest": manifest.digest})
    return proposed


def cli_run(args, project: Path):
    result = CliRunner().invoke(cli, args, standalone_mode=False)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def error_of(args) -> str:
    from expc.errors import ExpcError

    result = CliRunner().invoke(cli, args, standalone_mode=False)
    assert isinstance(result.exception, ExpcError), result.output
    return result.exception.render()


@pytest.fixture
def two_projects(tmp_path):
    roots = []
    for name in ("a", "b"):
        root = tmp_path / name
        (root / "specs").mkdir(parents=True)
        shutil.copytree(Path(__file__).parent.parent / "lib", root / "lib")
        write_spec(root)
        roots.append(root)
    return roots


def test_same_seed_same_trials_and_an_interrupted_search_proposes_what_an_uninterrupted_one_did(two_projects):
    a, b = two_projects
    uninterrupted = run_trials(a, 5)
    # b: two trials, then "interrupted": every later proposal comes from a Search rebuilt from disk
    interrupted = run_trials(b, 2) + run_trials(b, 3)
    assert [t["trial"] for t in interrupted] == [0, 1, 2, 3, 4]  # numbers go on after the interruption
    assert interrupted == uninterrupted
    # past the 2 random startup trials, TPE proposes from the results: different results, other trials
    shutil.rmtree(b / "manifests")  # the manifests and their index: a new search
    shutil.rmtree(b / "runs")

    def upside_down(project, digest, tla):  # the best trial before is now the worst
        fake_result(project, digest, tla, value=100 - score(tla))
    other = run_trials(b, 4, upside_down)
    assert other[:2] == uninterrupted[:2] and other[2:] != uninterrupted[2:4]
    # the index records every trial with its search and number; `expc ls manifests` shows them
    entries = read_index(Project(a))["manifests"]
    trials = {n: d for d, e in entries.items() for s in e["sources"] for n in s.get("search", {}).get("s", [])}
    assert trials == {t["trial"]: t["digest"] for t in uninterrupted}


def test_another_seed_proposes_other_trials(two_projects):
    a, b = two_projects
    write_spec(b, options="trials=6, seed=4, startup_trials=2")
    assert [t["tla"] for t in run_trials(a, 2)] != [t["tla"] for t in run_trials(b, 2)]


def test_propose_writes_reviewable_manifests_and_a_later_search_counts_cached_trials_without_training(
        two_projects, monkeypatch):
    a, b = two_projects
    monkeypatch.chdir(a)
    proposed = cli_run(["search", "specs/s.jsonnet", "--propose", "2"], a)
    assert proposed.exit_code == 0
    paths = proposed.stdout.splitlines()
    assert len(paths) == 2 and all((a / p).is_file() for p in paths)
    assert "trial 0: trial=0,lr=" in proposed.stderr and "trial 1: trial=1,lr=" in proposed.stderr
    listed = cli_run(["ls", "manifests"], a).stdout
    assert "specs/s.jsonnet (search s trial 0)" in listed and "specs/s.jsonnet (search s trial 1)" in listed
    # each is a manifest like any other: `expc build --tla` of its arguments gives the same file
    index = read_index(Project(a))["manifests"]
    for path in paths:
        digest = Path(path).stem
        tla = index[digest]["sources"][0]["tla"]
        again = cli_run(["build", "specs/s.jsonnet", *[f"--tla={k}={json.dumps(v)}" for k, v in tla.items()]], a)
        assert again.stdout.strip() == path
        # the rebuild kept the trial's record
        assert read_index(Project(a))["manifests"][digest]["sources"][0]["search"] == {"s": [paths.index(path)]}
    # a plain build of the spec is one manifest, the default arguments', with no search field
    plain = cli_run(["build", "specs/s.jsonnet"], a).stdout.splitlines()
    assert len(plain) == 1 and plain[0] not in paths
    # results for the two proposed trials (as if run elsewhere), then `expc search` to a budget of 3
    for path in paths:
        digest = Path(path).stem
        fake_result(a, digest, read_index(Project(a))["manifests"][digest]["sources"][0]["tla"])
    # b holds what trial 2 of a will be, already completed: the search runs nothing at all
    monkeypatch.chdir(b)
    expected = run_trials(b, 3)
    shutil.copytree(b / "runs", a / "runs", dirs_exist_ok=True)
    monkeypatch.chdir(a)
    done = subprocess.run([sys.executable, "-m", "expc", "search", "specs/s.jsonnet", "--trials", "3"], cwd=a,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.count("completed (cached)") == 3 and "trial 2 proposed: manifests/" in out
    assert not list((a / "runs").glob("*/logs"))  # nothing was launched
    best = min(expected, key=lambda t: score(t["tla"]))
    assert f"search s: 3 of 3 trials finished; best: trial {best['trial']}" in out
    assert f"val_loss {score(best['tla']):.4f}, manifests/{best['digest']}.json" in out
    assert [Path(p).stem for p in paths] == [t["digest"] for t in expected[:2]]
    # the budget is spent: nothing more to propose
    more = subprocess.run([sys.executable, "-m", "expc", "search", "specs/s.jsonnet", "--trials", "3", "--propose",
                           "1"], cwd=a, capture_output=True, text=True, timeout=120)
    assert more.returncode == 0 and more.stdout == ""
    assert "search s: the budget of 3 trials is spent; 0 proposed (--trials N raises it)" in more.stderr


def test_failed_pruned_and_unfinished_trials_are_read_from_their_run_folders(two_projects):
    a, _ = two_projects
    run_trials(a, 1, lambda p, d, t: fake_result(p, d, t, status="failed"))
    run_trials(a, 1, lambda p, d, t: fake_result(p, d, t, status="pruned"))
    run_trials(a, 1, lambda p, d, t: fake_result(p, d, t, status="preempted"))
    search = Search(a / "specs" / "s.jsonnet", Project(a))
    trials = search.trials()
    assert [(t.number, t.status, t.value) for t in trials] == [(0, "failed", None), (1, "pruned", None),
                                                                (2, None, None)]
    assert trials[1].intermediate == {10: score(trials[1].tla) + 1, trials[1].tla["steps"]: score(trials[1].tla)}
    # Optuna takes them as FAIL, PRUNED (with its intermediate values) and RUNNING
    assert set(search.propose(3, trials)) == {"lr", "steps"}


@pytest.mark.parametrize("space, options, message", [
    ("{ lr: expc.search.uniform(1e-2, 1e-4) }", OPTIONS,
     "specs/s.jsonnet: search.space.lr: low must be below high, got 0.01, 0.0001"),
    ("{ lrr: expc.search.uniform(1e-4, 1e-2) }", OPTIONS,
     "specs/s.jsonnet: search.space.lrr: 'lrr' is not a top-level argument of the spec (did you mean \"lr\"?); "
     "it takes lr, steps, mbs"),
    ("{ lr: [1e-3, 1e-2] }", OPTIONS,
     "specs/s.jsonnet: search.space.lr: expected expc.search.uniform(low, high), log_uniform(low, high), "
     "int(low, high, log=false, step=1) or choice([values]), got [0.001, 0.01]"),
    ("{ steps: expc.search.int(10, 80, step=20) }", OPTIONS,
     "specs/s.jsonnet: search.space.steps: high - low (70) must be a multiple of step 20"),
    ("{}", OPTIONS, "specs/s.jsonnet: search.space must be an object of top-level argument -> distribution"),
    (SPACE, "metric='accuracy', trials=2",
     "specs/s.jsonnet: search.metric must be one of val_loss, loss (a record of metrics.jsonl), got 'accuracy'"),
    (SPACE, "direction='min'", "specs/s.jsonnet: search.direction must be 'minimize' or 'maximize', got 'min'"),
    (SPACE, "trials=0", "specs/s.jsonnet: search.trials must be a whole number >= 1, got 0"),
    (SPACE, "early_stopping=[{ rule: 'halving' }]",
     "specs/s.jsonnet: search.early_stopping[0]: a rule is expc.sweep.threshold(metric, above, at_step), "
     "expc.sweep.median(metric, startup, warmup) or expc.sweep.successive_halving(metric, min_resource, "
     "reduction_factor, min_early_stopping_rate)"),
])
def test_declaration_errors(project, monkeypatch, space, options, message):
    write_spec(project, space, options)
    monkeypatch.chdir(project)
    assert error_of(["search", "specs/s.jsonnet", "--propose", "1"]).startswith(message)
    assert not (project / "manifests").exists()  # nothing half-written


def test_specs_that_declare_no_search_and_trials_that_do_not_compile(project, monkeypatch):
    monkeypatch.chdir(project)
    (project / "specs" / "plain.jsonnet").write_text(
        "local expc = import 'expc.libsonnet';\nexpc.experiment + { hardware: expc.hardware.cpu_laptop, "
        "model: expc.models.gpt_debug, global_batch_size:: 4, micro_batch_size:: 2 }\n")
    assert error_of(["search", "specs/plain.jsonnet"]) == (
        "specs/plain.jsonnet: the spec declares no search: return expc.search.declare(experiment, space, "
        "metric=..., direction=..., trials=..., seed=...) from it")
    # micro_batch_size 3 does not divide the global batch of 4: the trial's own problem, named
    write_spec(project, "{ mbs: expc.search.choice([3]) }", "trials=2")
    text = error_of(["search", "specs/s.jsonnet", "--propose", "1"])
    assert text.startswith("--tla mbs=3: trial 0 (trial=0,mbs=3) does not compile: global batch 4 is not a "
                           "multiple of micro batch 3 x world size 2 = 6")
    assert text.endswith("(narrow search.space to what compiles)")
    assert not (project / "manifests").exists()


def test_a_completed_trial_without_the_metric_is_an_error(two_projects, monkeypatch):
    a, _ = two_projects
    run_trials(a, 1, lambda p, d, t: fake_result(p, d, t, metric="loss"))
    monkeypatch.chdir(a)
    text = error_of(["search", "specs/s.jsonnet", "--propose", "1"])
    assert "trial 0 (" in text and "completed, but its metrics.jsonl has no val_loss record: the search's " \
        "metric is missing" in text
    assert text.startswith("runs/")


def test_the_declaration_is_in_no_manifest(project, monkeypatch):
    """The same experiment with and without a search declared: the same digest."""
    monkeypatch.chdir(project)
    write_spec(project)
    no_declaration = "(function(e, space, trials, seed, startup_trials) e)("
    (project / "specs" / "bare.jsonnet").write_text(
        (SPEC % {"space": SPACE, "options": OPTIONS}).replace("expc.search.declare(", no_declaration))
    with_search = cli_run(["build", "specs/s.jsonnet", "--tla", "lr=0.001"], project).stdout
    without = cli_run(["build", "specs/bare.jsonnet", "--tla", "lr=0.001"], project).stdout
    assert with_search == without and with_search.startswith("manifests/")


def test_report_of_a_search_lists_its_trials_by_the_declared_metric_and_direction(project, monkeypatch):
    from expc.review.report import collect, render_text

    monkeypatch.chdir(project)
    write_spec(project, options="trials=6, seed=3, startup_trials=2, direction='maximize', metric='loss'")
    with pytest.raises(Exception, match="search s has no trials yet: `expc search specs/s.jsonnet` runs them"):
        collect("specs/s.jsonnet", Project(project))
    proposed = run_trials(project, 3, lambda p, d, tla: fake_result(p, d, tla, metric="loss"))
    for target in ("specs/s.jsonnet", "s"):  # the spec, or the search's name as the index records it
        report = collect(target, Project(project))
        assert report.kind == "search" and report.axes == ["lr", "steps"]  # the trial number is no axis
        values = {int(r.axes["trial"]): r.value for r in report.rows}
        assert values == {t["trial"]: score(t["tla"]) for t in proposed}
        assert [r.value for r in report.rows] == sorted(values.values(), reverse=True)  # maximize: highest first
        best = report.rows[0]
        assert render_text(report).splitlines()[4] == (
            f"best: {best.member} ({best.digest[:12]}), final training loss {best.value:.4f}")


def test_the_declaration_is_read_under_the_specs_import_rules(project, monkeypatch):
    monkeypatch.chdir(project)
    write_spec(project, space="{ lr: std.parseJson(importstr '/etc/passwd') }")
    assert error_of(["search", "specs/s.jsonnet", "--propose", "1"]) == (
        "specs/s.jsonnet:14:31: import '/etc/passwd': absolute paths are refused; "
        "import relative to lib/ or the spec's folder")
    assert not (project / "manifests").exists()
