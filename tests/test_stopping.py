"""Successive halving (ASHA) as the executor decides it, held equal to Optuna's own
SuccessiveHalvingPruner: the same synthetic sweeps, members reporting asynchronously (several
running at once, in a random interleaving), and at every report the same stop-or-go decision,
the same rung and the same value recorded there. Also the lib's declaration and its refusals."""
from __future__ import annotations

import json
import math
import random

import pytest

from expc.compile.stopping import Peer, SuccessiveHalving, first_stop, read_rules
from expc.project import Project


def histories(seed: int, members: int, steps: int, every: int) -> list[list[dict]]:
    """Loss curves that fall at different rates to different floors, with noise, so members
    cross each other and the ranking at an early rung is not the ranking at the end."""
    rng = random.Random(seed)
    out = []
    for _ in range(members):
        floor, height, rate = rng.uniform(2.0, 4.0), rng.uniform(1.0, 3.0), rng.uniform(5.0, 80.0)
        out.append([{"step": s, "val_loss": round(floor + height * math.exp(-s / rate) + rng.gauss(0, 0.05), 6)}
                    for s in range(0, steps + 1, every)])
    return out


def replay(curves, parallel: int, seed: int, rule: SuccessiveHalving, optuna_resource):
    """Both deciders on one schedule; returns the decisions taken (member, step, stop, rung, value)
    by ours and Optuna's, in the order the reports came."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=optuna_resource,
                                                    reduction_factor=rule.reduction_factor,
                                                    min_early_stopping_rate=rule.min_early_stopping_rate)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    rng = random.Random(seed)
    waiting = list(range(len(curves)))
    running: dict[int, object] = {}  # member -> its Optuna trial
    seen = {i: [] for i in range(len(curves))}  # member -> the records it wrote so far
    completed, stopped_by = set(), {}
    ours, theirs = [], []
    while waiting or running:
        while waiting and len(running) < parallel:
            running[waiting.pop(0)] = study.ask()
        member = rng.choice(sorted(running))
        trial = running[member]
        record = curves[member][len(seen[member])]
        seen[member].append(record)
        trial.report(record["val_loss"], record["step"])
        pruned = trial.should_prune()
        peers = [Peer(seen[j], j in completed, stopped_by.get(j)) for j in seen if j != member and seen[j]]
        decision = rule.decide(seen[member], peers)
        stop = bool(decision and decision["stop"])
        rungs = sorted(int(k.rsplit("_", 1)[1]) for k in study.trials[trial.number].system_attrs
                       if k.startswith("completed_rung_"))
        theirs.append((member, record["step"], pruned, rungs[-1] if pruned and rungs else None,
                       study.trials[trial.number].system_attrs.get(f"completed_rung_{rungs[-1]}") if pruned and rungs
                       else None))
        ours.append((member, record["step"], stop, decision["rung"] if stop else None,
                     decision["value"] if stop else None))
        if pruned or stop:
            study.tell(trial, state=TrialState.PRUNED)
            del running[member]
            stopped_by[member] = decision
            # records written after the decision (the trainer finishing its step) are no rung's
            leaked = rule.rung_step(optuna_resource, (decision or {}).get("rung", 0) + 1)
            seen[member].append({"step": max(leaked, record["step"] + 1), "val_loss": record["val_loss"] - 0.5})
        elif len(seen[member]) == len(curves[member]):
            study.tell(trial, record["val_loss"])
            del running[member]
            completed.add(member)
    return ours, theirs


@pytest.mark.parametrize("min_resource, reduction_factor, rate, parallel", [
    (10, 4, 0, 4),   # Optuna's defaults with a fixed first rung: rungs end at steps 10, 40, 160
    (5, 2, 0, 3),    # halving: rungs at 5, 10, 20, 40, ...; some rungs complete at one report together
    (3, 3, 1, 1),    # one member at a time, the first rung skipped (rate 1): rungs at 9, 27, 81
    (1, 4, 0, 8),    # every member at once
])
def test_successive_halving_decides_as_optunas_pruner(min_resource, reduction_factor, rate, parallel):
    rule = SuccessiveHalving("val_loss", min_resource, reduction_factor, rate)
    pruned_somewhere = 0
    for seed in range(3):
        curves = histories(seed, members=14, steps=200, every=10 if min_resource > 1 else 7)
        ours, theirs = replay(curves, parallel, seed, rule, min_resource)
        assert ours == theirs
        pruned_somewhere += sum(stop for _, _, stop, _, _ in ours)
    assert pruned_somewhere >= 3  # the comparison judged real prunings, not only "go on"


def test_auto_min_resource_is_optunas_estimate_and_waits_for_a_completed_member():
    import optuna
    from optuna.pruners._successive_halving import _estimate_min_resource

    rule = SuccessiveHalving()  # 'auto', 4, 0
    curves = histories(7, members=3, steps=460, every=20)
    running = [Peer(curves[1][:5]), Peer(curves[2][:3])]
    assert rule.decide(curves[0][:8], running) is None  # nobody completed: no decision
    study = optuna.create_study()
    for curve in curves[:2]:
        trial = study.ask()
        for r in curve:
            trial.report(r["val_loss"], r["step"])
        study.tell(trial, curve[-1]["val_loss"])
    peers = [Peer(curves[0], completed=True), Peer(curves[1], completed=True)]
    assert rule.resource(peers) == _estimate_min_resource(study.trials) == 4  # step 460 // 100
    decision = rule.decide(curves[2][:2], peers)  # step 20: rungs 0 (4) and 1 (16) complete at once
    assert decision["rung"] == 1 and decision["comparison"].startswith(f"val_loss {curves[2][1]['val_loss']:.4f} at "
                                                                       "step 20 ")


def test_the_decision_says_rule_rung_step_value_and_comparison():
    rule = SuccessiveHalving(min_resource=10)
    at_10 = [[{"step": 0, "val_loss": 6.0}, {"step": 10, "val_loss": v}] for v in (4.0, 4.2, 4.4, 4.6)]
    peers = [Peer(h) for h in at_10]
    assert rule.decide([{"step": 0, "val_loss": 6.0}, {"step": 10, "val_loss": 4.5}], peers) == {
        "rule": "successive halving on val_loss (min_resource 10, reduction factor 4, min early-stopping rate 0)",
        "rung": 0, "step": 10, "value": 4.5, "stop": True,
        "comparison": "val_loss 4.5000 at step 10 > 4.0000: not among the best 1 of 5 members at rung 0 (step >= 10)"}
    kept = rule.decide([{"step": 10, "val_loss": 3.9}], peers)
    assert (kept["stop"], kept["comparison"]) == (False, "val_loss 3.9000 at step 10 <= 3.9000: among the best 1 of "
                                                         "5 members at rung 0 (step >= 10), promoted")
    # a record without the metric, or one that completes no rung, decides nothing live...
    assert rule.decide([{"step": 10, "val_loss": 4.5}, {"step": 12, "loss": 3.0}], peers) is None
    assert rule.decide([{"step": 10, "val_loss": 3.9}, {"step": 20, "val_loss": 3.8}], peers) is None
    # ...but judged again (a member an earlier sweep pruned), every rung it reached counts
    again = first_stop([rule], [{"step": 10, "val_loss": 4.5}, {"step": 12, "loss": 3.0}], peers, again=True)
    assert again["rung"] == 0 and again["stop"]
    # a peer another rule stopped at step 10 counts up to there only, whatever it wrote after
    stopped = Peer([{"step": 10, "val_loss": 3.0}, {"step": 40, "val_loss": 1.0}], stopped_by={"step": 10})
    assert rule.decide([{"step": 10, "val_loss": 2.9}, {"step": 40, "val_loss": 2.5}], [stopped])["stop"] is False
    # once enough worse members reached the rung, the same value is promoted: a pruned member resumes
    worse = peers + [Peer([{"step": 10, "val_loss": 4.7 + i / 10}]) for i in range(11)]  # 4.5: 4th of 16
    assert first_stop([rule], [{"step": 10, "val_loss": 4.5}], worse, again=True) is None


SPEC = """local expc = import 'expc.libsonnet';
expc.sweep.stop_when(expc.sweep.grid(expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(),
  global_batch_size:: 8, micro_batch_size:: 2,
}, { lr: ['1e-3', '2e-3'] }), [%s])
"""


@pytest.mark.parametrize("call, expected", [
    ("expc.sweep.successive_halving()", SuccessiveHalving("val_loss", "auto", 4, 0)),
    ("expc.sweep.successive_halving('loss', 20, 3, 1)", SuccessiveHalving("loss", 20, 3, 1)),
    ("expc.sweep.successive_halving(min_resource=0)",
     "specs/asha.jsonnet: early_stopping[0]: min_resource must be 'auto' or a whole number >= 1, got 0"),
    ("expc.sweep.successive_halving(reduction_factor=1.5)",
     "specs/asha.jsonnet: early_stopping[0]: reduction_factor must be a whole number >= 2, got 1.5"),
    ("expc.sweep.successive_halving(min_early_stopping_rate=-1)",
     "specs/asha.jsonnet: early_stopping[0]: min_early_stopping_rate must be a whole number >= 0, got -1"),
    ("{ rule: 'hyperband' }",
     "specs/asha.jsonnet: early_stopping[0]: a rule is expc.sweep.threshold(metric, above, at_step), "
     "expc.sweep.median(metric, startup, warmup) or expc.sweep.successive_halving(metric, min_resource, "
     "reduction_factor, min_early_stopping_rate)"),
])
def test_successive_halving_in_a_spec(project, call, expected):
    (project / "specs" / "asha.jsonnet").write_text(SPEC % call)
    if isinstance(expected, str):
        with pytest.raises(Exception) as caught:
            read_rules(project / "specs" / "asha.jsonnet", Project(project))
        assert caught.value.render() == expected
    else:
        assert read_rules(project / "specs" / "asha.jsonnet", Project(project)) == [expected]


def test_the_rules_are_in_the_build_preview_and_in_ls_manifests(project, monkeypatch, capsys):
    from expc.cli import main

    def cli(*args):
        with pytest.raises(SystemExit) as info:
            main(list(args))
        out, err = capsys.readouterr()
        return info.value.code, out, err

    monkeypatch.chdir(project)
    monkeypatch.delenv("EXPC_RUNS_DIR", raising=False)
    (project / "specs" / "asha.jsonnet").write_text(
        SPEC % "expc.sweep.successive_halving(min_resource=10), expc.sweep.threshold('val_loss', 4.5, 100)")
    (project / "specs" / "plain.jsonnet").write_text(SPEC.replace("expc.sweep.stop_when(", "(").replace(", [%s])", ")"))
    code, _, err = cli("build", "specs/asha.jsonnet", "specs/plain.jsonnet")
    assert code == 0, err
    lines = err.splitlines()
    at = lines.index("  early stopping (`expc run --parallel` applies it):")
    assert lines[at - 1].startswith("  to run: 2 members") and lines[at + 1:at + 4] == [
        "    expc.sweep.successive_halving('val_loss', 10, 4, 0)", "    expc.sweep.threshold('val_loss', 4.5, 100)",
        "specs/plain.jsonnet: 2 members"]
    assert err.count("early stopping") == 1  # a sweep without rules says nothing about them
    code, out, _ = cli("ls", "manifests", "--json")
    rules = {row["spec"]: row["early_stopping"] for row in json.loads(out)}
    assert rules == {"specs/asha.jsonnet[lr=1e-3]": "successive_halving('val_loss', 10, 4, 0); "
                                                    "threshold('val_loss', 4.5, 100)",
                     "specs/asha.jsonnet[lr=2e-3]": "successive_halving('val_loss', 10, 4, 0); "
                                                    "threshold('val_loss', 4.5, 100)",
                     "specs/plain.jsonnet[lr=1e-3]": "-", "specs/plain.jsonnet[lr=2e-3]": "-"}
    (project / "specs" / "asha.jsonnet").unlink()  # the index still lists its members; the rules are gone
    code, out, _ = cli("ls", "manifests")
    rows = [line.split()[1:] for line in out.splitlines()]
    assert code == 0 and ["specs/asha.jsonnet[lr=1e-3]", "-", "-", "?"] in rows
