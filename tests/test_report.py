"""`expc report` on run folders written here (metadata.json and metrics.jsonl as the trainer
writes them): the ordering, seed replicas grouped with their mean and spread, members that never
ran, a sweep found by name, and refusals. The report of real runs is checked in
tests/trainer/test_sweep_executor.py."""
from __future__ import annotations

import csv
import json
import statistics

import pytest

from .conftest import run_cli as cli

SPEC = """local expc = import 'expc.libsonnet';
expc.sweep.replicas(expc.sweep.grid(expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(),
  global_batch_size:: 4, micro_batch_size:: 2,
}, { lr: ['1e-3', '2e-3'] }), 2)
"""
# member -> final validation loss (None: never ran)
LOSSES = {"lr=1e-3,seed=1": 3.5, "lr=1e-3,seed=2": 3.25, "lr=2e-3,seed=1": 3.0, "lr=2e-3,seed=2": None}


@pytest.fixture
def sweep(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    monkeypatch.delenv("EXPC_RUNS_DIR", raising=False)
    (project / "specs" / "seeds.jsonnet").write_text(SPEC)
    _, out, _ = cli(["build", "specs/seeds.jsonnet", "--json"], capsys)
    digests = {row["member"]: row["digest"] for row in json.loads(out)}
    for member, loss in LOSSES.items():
        if loss is None:
            continue
        folder = project / "runs" / digests[member]
        folder.mkdir(parents=True)
        (folder / "metadata.json").write_text(json.dumps({"status": "completed", "step": 50, "duration_s": 12.5}))
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
            {"step": 0, "val_loss": 5.5, "elapsed": 0.1},
            {"step": 25, "loss": loss + 0.5, "elapsed": 6.0}, {"step": 25, "val_loss": loss - 0.1, "elapsed": 6.2},
            {"step": 50, "loss": loss + 0.2, "elapsed": 12.0}, {"step": 50, "val_loss": loss, "elapsed": 12.4}]))
    return digests


def test_report_orders_members_groups_replicas_and_lists_members_that_never_ran(sweep, project, capsys):
    code, out, err = cli(["report", "specs/seeds.jsonnet"], capsys)
    assert code == 0, err
    folder = project / "reports" / "seeds"
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert [(r["member"], r["lr"], r["seed"], r["final_val_loss"], r["best_val_loss"], r["status"]) for r in rows] == [
        ("lr=2e-3,seed=1", "2e-3", "1", "3.0000", "2.9000", "completed"),
        ("lr=1e-3,seed=2", "1e-3", "2", "3.2500", "3.1500", "completed"),
        ("lr=1e-3,seed=1", "1e-3", "1", "3.5000", "3.4000", "completed"),
        ("lr=2e-3,seed=2", "2e-3", "2", "-", "-", "not run"),
    ]
    assert rows[0]["tokens"] == str(50 * 4 * 32) and rows[0]["train_s"] == "12.5"
    groups = list(csv.DictReader((folder / "replicas.csv").open()))
    assert [(g["group"], g["seeds"], g["with_loss"]) for g in groups] == [("lr=2e-3", "2", "1"), ("lr=1e-3", "2", "2")]
    assert float(groups[1]["mean"]) == 3.375
    assert float(groups[1]["std"]) == pytest.approx(statistics.stdev([3.5, 3.25]), abs=1e-6)
    assert "best: lr=2e-3,seed=1 (" in out
    assert "replicas lr=1e-3: 2 of 2 seeds, mean 3.3750, std 0.1768" in out
    assert ("parameter importance: not computed: it needs at least 8 completed members with a validation loss and "
            "2 axes that vary among them; this sweep has 3 such members and 2 such axes") in out
    page = (folder / "report.html").read_text()
    assert "<h2>Seed replicas</h2>" in page and page.count("data:image/png;base64,") == 2
    assert "<h2>Parameter importance</h2><p>Not computed: it needs at least 8 completed members" in page
    assert not (folder / "importance.csv").exists()
    assert f"manifests/{sweep['lr=2e-3,seed=1']}.json" in page
    # found by name too, the same files
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert cli(["report", "seeds"], capsys)[0] == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_report_refusals(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    assert cli(["report", "nothing"], capsys)[2] == (
        "error: no sweep named 'nothing' in the index (manifests/index/) (give the spec, or the name of a spec whose "
        "manifests were built)\n")
    assert cli(["report", "specs/none.jsonnet"], capsys)[2] == "error: no such spec: specs/none.jsonnet\n"


GRID = """local expc = import 'expc.libsonnet';
local base = expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(),
  global_batch_size:: 4, micro_batch_size:: 2,
};
expc.sweep.grid(base, {
  lr: ['1e-4', '3e-4', '1e-3', '3e-3'],
  model: { plain: expc.models.gpt_debug, dropout: expc.models.gpt_debug { dropout: 0.1 } },
  seed: [1, 2],
})
"""


def test_parameter_importance_with_enough_members(project, monkeypatch, capsys):
    """16 completed members whose loss depends mostly on the learning rate (a valley at 1e-3),
    a little on the model variant and hardly on the seed: fANOVA ranks them so, the files hold
    it, and a second report writes the same bytes."""
    import base64
    import math

    monkeypatch.chdir(project)
    monkeypatch.delenv("EXPC_RUNS_DIR", raising=False)
    (project / "specs" / "grid.jsonnet").write_text(GRID)
    _, out, _ = cli(["build", "specs/grid.jsonnet", "--json"], capsys)
    members = {row["member"]: row["digest"] for row in json.loads(out)}
    assert len(members) == 16
    for member, digest in members.items():
        axes = dict(part.split("=") for part in member.split(","))
        loss = 3.0 + abs(math.log10(float(axes["lr"])) + 3) + (0.15 if axes["model"] == "dropout" else 0.0) \
            + 0.01 * int(axes["seed"])
        folder = project / "runs" / digest
        folder.mkdir(parents=True)
        (folder / "metadata.json").write_text(json.dumps({"status": "completed", "step": 50, "duration_s": 9.0}))
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
            {"step": 0, "val_loss": 5.5}, {"step": 50, "loss": loss + 0.3}, {"step": 50, "val_loss": round(loss, 6)}]))
    code, out, err = cli(["report", "specs/grid.jsonnet"], capsys)
    assert code == 0, err
    folder = project / "reports" / "grid"
    rows = list(csv.DictReader((folder / "importance.csv").open()))
    assert [(r["axis"], r["modelled_as"]) for r in rows] == [("lr", "float, log"), ("model", "categorical (2)"),
                                                               ("seed", "int")]
    weights = {r["axis"]: float(r["importance"]) for r in rows}
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert weights["lr"] > 0.5 and weights["seed"] < 0.05, weights
    line = next(li for li in out.splitlines() if li.startswith("parameter importance"))
    assert line == (f"parameter importance (fANOVA, 16 members): lr {weights['lr']:.3f}, "
                    f"model {weights['model']:.3f}, seed {weights['seed']:.3f}")
    png = (folder / "importance.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = (folder / "report.html").read_text()
    assert "<h2>Parameter importance</h2>" in page and base64.b64encode(png).decode() in page
    lr = weights["lr"]
    assert f'<tr><td>lr</td><td class="n">{lr:.3f}</td><td>float, log</td></tr>' in page
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert cli(["report", "grid"], capsys)[0] == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
