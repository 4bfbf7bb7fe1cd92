"""`expc run` given a spec (built first, as `expc build` builds it), `--tla` / `--set` refused for
a manifest, the runs folder moved by `--runs-dir` or EXPC_RUNS_DIR, and what `expc ls runs` /
`expc ls manifests` show. Dry runs only: nothing here trains (tests/trainer/test_project_runs.py
trains one)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from expc.compile.canonical import load_manifest
from expc.compile.write import read_index
from expc.project import Project

from .conftest import run_cli as expc


def commands(out: str) -> list[list[str]]:
    """The deepspeed command lines of a dry run's output, split as the shell would."""
    return [shlex.split(line) for line in out.splitlines() if "deepspeed" in line]


def run_dir_of(command: list[str]) -> Path:
    return Path(command[command.index("--run-dir") + 1])


def test_run_of_a_spec_builds_it_as_build_does_then_runs_it(proj, capsys):
    code, out, err = expc(["run", "specs/one.jsonnet", "--dry-run"], capsys)
    assert (code, err) == (0, "")
    built, plan = out.splitlines()
    # the same line `expc build` prints, and the same files it writes
    assert expc(["build", "specs/one.jsonnet"], capsys) == (0, built + "\n", "")
    digest = Path(built).stem
    assert load_manifest(proj / built)[1] == digest
    (command,) = commands(plan)
    assert command[command.index("--module") + 2] == str(proj / built)
    assert run_dir_of(command) == proj / "runs" / digest
    assert not (proj / "runs").exists()  # a dry run starts nothing


def test_run_of_a_sweep_spec_runs_every_member_in_order(proj, capsys):
    code, out, _ = expc(["run", "specs/two.jsonnet", "--dry-run"], capsys)
    built = [line for line in out.splitlines() if line.startswith("manifests/")]
    assert code == 0 and len(built) == 2
    index = read_index(Project(proj))["manifests"]
    assert [index[Path(p).stem]["sources"][0]["member"] for p in built] == ["a", "b"]
    assert [c[c.index("--module") + 2] for c in commands(out)] == [str(proj / p) for p in built]


def test_set_and_tla_shape_the_spec_run(proj, capsys):
    code, out, _ = expc(["run", "specs/one.jsonnet", "--set", "train.max_steps=12", "--tla", "lr=1e-3",
                         "--dry-run"], capsys)
    assert code == 0
    data, _ = load_manifest(proj / out.splitlines()[0])
    assert data["train"]["max_steps"] == 12
    source = read_index(Project(proj))["manifests"][Path(out.splitlines()[0]).stem]
    assert source["sources"][0]["set"] == ["train.max_steps=12"] and source["sources"][0]["tla"] == {"lr": 1e-3}


def test_set_or_tla_with_a_manifest_is_refused(proj, capsys):
    built = expc(["build", "specs/one.jsonnet"], capsys)[1].strip()
    prefix = Path(built).stem[:8]
    assert expc(["run", prefix, "--set", "seed=3", "--dry-run"], capsys) == (1, "", (
        f"error: --set shapes a spec, but {prefix} is a manifest: its digest fixes every value. Give the spec "
        "instead (`expc run SPEC --set PATH=VALUE`), or build a new manifest with `expc build`\n"))
    code, _, err = expc(["run", "specs/one.jsonnet", built, "--tla", "lr=1e-3", "--set", "seed=3"], capsys)
    assert (code, err.splitlines()[0]) == (1, (f"error: --tla and --set shape a spec, but {built} is a manifest: "
                                               "its digest fixes every value. Give the spec instead (`expc run "
                                               "SPEC --set PATH=VALUE`), or build a new manifest with `expc build`"))


def test_a_spec_that_fails_writes_nothing_and_runs_nothing(proj, capsys):
    code, out, err = expc(["run", "specs/one.jsonnet", "--set", "model.n_head=3", "--dry-run"], capsys)
    assert code == 1 and out == "" and err.startswith("error: ")
    assert not (proj / "manifests").exists()


def test_runs_dir_option_and_environment_variable(proj, capsys, monkeypatch, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("scratch") / "runs"
    code, out, _ = expc(["run", "specs/one.jsonnet", "--dry-run", "--runs-dir", str(elsewhere)], capsys)
    digest = Path(out.splitlines()[0]).stem
    (command,) = commands(out)
    assert code == 0 and run_dir_of(command) == elsewhere / digest
    assert command[command.index("--enable_each_rank_log") + 1] == str(elsewhere / digest / "logs")
    # the variable, relative to the working directory; an option given beats it
    monkeypatch.setenv("EXPC_RUNS_DIR", "../shared-runs")
    (command,) = commands(expc(["run", digest[:8], "--dry-run"], capsys)[1])
    assert run_dir_of(command) == (proj.parent / "shared-runs" / digest).resolve()
    (command,) = commands(expc(["run", digest[:8], "--dry-run", "--runs-dir", str(elsewhere)], capsys)[1])
    assert run_dir_of(command) == elsewhere / digest
    # outside the hash: the same digest wherever the runs go
    monkeypatch.delenv("EXPC_RUNS_DIR")
    assert expc(["build", "specs/one.jsonnet"], capsys)[1].strip() == f"manifests/{digest}.json"


def fake_run(runs: Path, digest: str, status: str, start: str, val_losses=None) -> None:
    """A run folder as the trainer leaves it (metadata.json; metrics.jsonl with an evaluation at
    step 0 and one per value of `val_losses`, none at all when it is None), for the readers."""
    folder = runs / digest
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"digest": digest, "status": status, "step": 20,
                                                      "start": start, "duration_s": 7.5}))
    if val_losses is not None:
        records = [{"step": 0, "val_loss": 5.5}, {"step": 10, "loss": 4.0}]
        records += [{"step": 10 * (i + 1), "val_loss": v} for i, v in enumerate(val_losses)]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_ls_runs_names_members_with_status_and_final_validation_loss(proj, capsys, tmp_path_factory):
    runs = tmp_path_factory.mktemp("scratch") / "runs"
    assert expc(["ls", "runs", "--runs-dir", str(runs)], capsys) == (
        0, f"no runs in {runs}/ (`expc run SPEC` starts one)\n", "")
    rows = json.loads(expc(["build", "specs/two.jsonnet", "specs/one.jsonnet", "--set", "seed=5", "--json"],
                           capsys)[1])
    a, b, one = (row["digest"] for row in rows)
    fake_run(runs, a, "completed", "2026-01-01T10:00:00+00:00", [3.14159, 2.71828])
    fake_run(runs, b, "failed", "2026-01-01T11:00:00+00:00")
    fake_run(runs, one, "running", "2026-01-01T12:00:00+00:00", [])
    assert expc(["ls", "runs", "--runs-dir", str(runs)], capsys) == (0, f"""\
digest        name                               status     step  val_loss  started                    duration_s
{a[:12]}  specs/two.jsonnet[a] --set seed=5  completed  20    2.7183    2026-01-01T10:00:00+00:00  7.5
{b[:12]}  specs/two.jsonnet[b] --set seed=5  failed     20    -         2026-01-01T11:00:00+00:00  7.5
{one[:12]}  specs/one.jsonnet --set seed=5     running    20    5.5       2026-01-01T12:00:00+00:00  7.5
""", "")


def test_ls_manifests_shows_the_arguments_of_each_build(proj, capsys):
    assert expc(["ls", "manifests"], capsys) == (0, "no manifests in manifests/ (`expc build SPEC` writes them)\n", "")
    plain = expc(["build", "specs/one.jsonnet"], capsys)[1].strip()
    shaped = expc(["build", "specs/one.jsonnet", "--tla", "lr=1e-3", "--set", "seed=5",
                   "--set", "train.max_steps=12"], capsys)[1].strip()
    rows = {r["digest"]: r for r in json.loads(expc(["ls", "manifests", "--json"], capsys)[1])}
    assert rows[Path(plain).stem[:12]] == {"digest": Path(plain).stem[:12], "spec": "specs/one.jsonnet",
                                           "tla": "-", "set": "-", "early_stopping": "-"}
    assert rows[Path(shaped).stem[:12]] == {"digest": Path(shaped).stem[:12], "spec": "specs/one.jsonnet",
                                            "tla": "lr=0.001", "set": "seed=5 train.max_steps=12",
                                            "early_stopping": "-"}


def test_export_reads_the_runs_folder_it_is_given(proj, capsys, tmp_path_factory):
    runs = tmp_path_factory.mktemp("scratch") / "runs"
    digest = Path(expc(["build", "specs/one.jsonnet"], capsys)[1].strip()).stem
    assert expc(["export", digest[:8], "--runs-dir", str(runs)], capsys) == (
        1, "", f"error: {digest[:12]} has no export: it has not run\n")
    fake_run(runs, digest, "failed", "2026-01-01T10:00:00+00:00")
    assert expc(["export", digest[:8], "--runs-dir", str(runs)], capsys) == (
        1, "", f"error: {digest[:12]} has no export: its run is failed\n")
    assert expc(["export", digest[:8]], capsys)[2] == f"error: {digest[:12]} has no export: it has not run\n"
