"""Sweep declarations (lib/sweep.libsonnet: zip, derived axes, random samples, seed replicas)
evaluated by the real go-jsonnet, and `expc build`'s preview of a sweep on stderr."""
from __future__ import annotations

import json
import re

import pytest

from expc.axes import axes_table, axis_values, replica_group
from expc.cli import main

from .test_lib import CPU, error_of, run


def lr_of(experiment: dict) -> float:
    return experiment["deepspeed"]["optimizer"]["params"]["lr"]


def test_zip_pairs_the_axes(project):
    doc = run(project, f"expc.sweep.zip({CPU}, {{ lr: ['1e-3', '3e-4'], 'train.max_steps': [100, 300] }})")
    assert sorted(doc) == ["lr=1e-3,train.max_steps=100", "lr=3e-4,train.max_steps=300"]
    assert lr_of(doc["lr=3e-4,train.max_steps=300"]) == 3e-4
    assert doc["lr=3e-4,train.max_steps=300"]["train"]["max_steps"] == 300


def test_zip_refuses_axes_of_different_lengths(project):
    message = error_of(project, f"expc.sweep.zip({CPU}, {{ lr: [1, 2], seed: [1] }})")
    assert message.startswith("lib/sweep.libsonnet:")
    assert "sweep.zip: every axis must have as many values; got lr: 2, seed: 1" in message


def test_derived_axis_is_a_function_of_the_free_ones_and_in_the_name(project):
    doc = run(project, f"expc.sweep.grid_derived({CPU} + {{ global_batch_size:: 16 }}, "
                       "{ micro_batch_size: [2, 4] }, { lr: function(v) v.micro_batch_size * 1e-4 })")
    assert sorted(doc) == ["micro_batch_size=2,lr=0.0002", "micro_batch_size=4,lr=0.0004"]
    assert lr_of(doc["micro_batch_size=4,lr=0.0004"]) == 4e-4
    assert doc["micro_batch_size=4,lr=0.0004"]["deepspeed"]["gradient_accumulation_steps"] == 2  # 16 / (4 x 2 processes)


SPACE = "{ lr: expc.sweep.log_uniform(1e-5, 1e-2), 'model.dropout': expc.sweep.uniform(0, 0.3), " \
        "micro_batch_size: expc.sweep.choice([2, 4]) }"


def test_random_draws_are_those_recorded(project):
    # A member's name and values are a promise across lib versions: a rebuilt sweep must keep
    # its members' digests (names recorded with the lib that kept each member's points as objects)
    doc = run(project, "local r = expc.sweep.random({ lr:: 0, seed:: 0, mb:: 0, model: { dropout: 0 } }, {\n"
                       "  lr: expc.sweep.log_uniform(1e-5, 1e-2), 'model.dropout': expc.sweep.uniform(0, 0.3),\n"
                       "  mb: expc.sweep.choice([2, '4', 'x']), seed: expc.sweep.int_uniform(1, 1000) }, 4, 7);\n"
                       "{ [m]: r[m] { values: [r[m].lr, r[m].mb, r[m].seed] } for m in std.objectFields(r) }")
    assert {name: (m["values"], m["model"]["dropout"]) for name, m in doc.items()} == {
        "sample=0,lr=0.00504,mb=4,model.dropout=0.141,seed=876": ([0.00504, 4, 876], 0.141),
        "sample=1,lr=2.63e-4,mb=2,model.dropout=0.225,seed=938": ([2.63e-4, 2, 938], 0.225),
        "sample=2,lr=0.00122,mb=x,model.dropout=0.222,seed=813": ([0.00122, "x", 813], 0.222),
        "sample=3,lr=5e-5,mb=x,model.dropout=0.241,seed=214": ([5e-5, "x", 214], 0.241),
    }


def test_random_samples_are_seeded_stable_and_written_as_their_values(project):
    doc = run(project, f"expc.sweep.random({CPU} + {{ global_batch_size:: 8 }}, {SPACE}, 4, 7)")
    assert len(doc) == 4
    again = run(project, f"expc.sweep.random({CPU} + {{ global_batch_size:: 8 }}, {SPACE}, 4, 7)")
    assert again == doc
    for name, experiment in doc.items():
        values = axis_values(name)
        assert list(values) == ["sample", "lr", "micro_batch_size", "model.dropout"]
        assert 1e-5 <= float(values["lr"]) <= 1e-2 and 0 <= float(values["model.dropout"]) <= 0.3
        # the name is the value, as written: 3 significant digits
        assert lr_of(experiment) == float(values["lr"])
        assert len(re.sub("[^0-9]", "", values["lr"].split("e")[0]).lstrip("0")) <= 3
        assert experiment["model"]["dropout"] == float(values["model.dropout"])
        assert experiment["deepspeed"]["train_micro_batch_size_per_gpu"] == int(values["micro_batch_size"])
    # more samples, or another seed: the first members stay; another seed draws other values
    more = run(project, f"expc.sweep.random({CPU} + {{ global_batch_size:: 8 }}, {SPACE}, 6, 7)")
    assert set(doc) < set(more)
    other = run(project, f"expc.sweep.random({CPU} + {{ global_batch_size:: 8 }}, {SPACE}, 4, 8)")
    assert not set(doc) & set(other)
    # log-uniform spreads over the decades: 20 samples do not all fall in the top one
    many = run(project, f"expc.sweep.random({CPU}, {{ lr: expc.sweep.log_uniform(1e-5, 1e-2) }}, 20, 1)")
    assert min(lr_of(e) for e in many.values()) < 1e-3


def test_replicas_of_a_sweep_and_of_one_experiment(project):
    doc = run(project, f"expc.sweep.replicas(expc.sweep.grid({CPU}, {{ lr: ['1e-3', '2e-3'] }}), 2)")
    assert sorted(doc) == ["lr=1e-3,seed=1", "lr=1e-3,seed=2", "lr=2e-3,seed=1", "lr=2e-3,seed=2"]
    assert doc["lr=2e-3,seed=2"]["seed"] == 2
    one = run(project, f"expc.sweep.replicas({CPU}, [5, 9])")
    assert {k: v["seed"] for k, v in one.items()} == {"seed=5": 5, "seed=9": 9}
    assert replica_group("lr=1e-3,seed=2") == "lr=1e-3"


def test_axes_table_orders_numbers_by_value():
    assert axes_table(["r=32,lr=1e-2", "r=8,lr=3e-3"]) == {"r": ["8", "32"], "lr": ["3e-3", "1e-2"]}
    assert axes_table(["short", "long"]) is None


SWEEP = """local expc = import 'expc.libsonnet';
expc.sweep.grid(expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(),
  global_batch_size:: 4, micro_batch_size:: 2,
}, { lr: ['1e-3', '2e-3', '4e-3'], seed: [1, 2] })
"""


def build(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(["build", *args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_build_previews_a_sweep_on_stderr(project, capsys, monkeypatch):
    from expc.estimate import DEFAULT_MFU, device_hours

    monkeypatch.chdir(project)
    monkeypatch.delenv("EXPC_RUNS_DIR", raising=False)
    (project / "specs" / "grid.jsonnet").write_text(SWEEP)
    code, out, err = build(["specs/grid.jsonnet", "--json"], capsys)
    rows = json.loads(out)  # stdout is untouched
    assert code == 0 and len(rows) == 6
    one = json.loads((project / rows[0]["path"]).read_text())
    each = device_hours(one, DEFAULT_MFU)  # every member has the same size
    assert err.splitlines()[:5] == [
        "specs/grid.jsonnet: 6 members",
        "  axis  values",
        "  lr    1e-3, 2e-3, 4e-3",
        "  seed  1, 2",
        "  completed runs in runs/: 0 of 6",
    ]
    assert err.splitlines()[5].startswith(f"  to run: 6 members, {6 * each:.3g} device-hours estimated (MFU: default")
    # two members ran (one completed, one failed): only the completed one counts as done
    for row, status in zip(rows[:2], ("completed", "failed")):
        (project / "runs" / row["digest"]).mkdir(parents=True)
        (project / "runs" / row["digest"] / "metadata.json").write_text(json.dumps({"status": status}))
    code, out, err = build(["specs/grid.jsonnet"], capsys)
    assert out.splitlines() == [r["path"] for r in rows]
    assert "  completed runs in runs/: 1 of 6" in err.splitlines()
    assert f"  to run: 5 members, {5 * each:.3g} device-hours" in err
    # one experiment: no preview at all
    (project / "specs" / "one.jsonnet").write_text(SWEEP.replace("expc.sweep.grid(", "(").replace(
        ", { lr: ['1e-3', '2e-3', '4e-3'], seed: [1, 2] })", ")"))
    assert build(["specs/one.jsonnet"], capsys)[2] == ""
