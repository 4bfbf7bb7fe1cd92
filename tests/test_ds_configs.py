"""Real DeepSpeed configs from well-known projects, with DeepSpeed itself as the judge.

The configs, their sources and the harness live next to the project, in ../shared/ds_configs/
(third-party files: read there, never copied in). The harness's `run_check.py` builds each case
with the CLI in a scratch copy of the project; this test asks the same questions in-process, with
the harness's own pieces: its DeepSpeed judge (DeepSpeedConfig plus DeepSpeed's optimizer and
scheduler builders), its cases, batch completion, mutations and probes. What must hold, as there:

- every config DeepSpeed accepts builds, unless it holds top-level keys DeepSpeed ignores, and
  then the message says that DeepSpeed ignores each of them;
- every config DeepSpeed refuses is refused;
- every mutation (misspelt key, number written as a string) and every probe (a cross-field rule
  DeepSpeed asserts, a value type inside optimizer or scheduler params...) is refused at its path;
- what expc writes for an accepted config is still accepted by DeepSpeed.

Imports deepspeed once per session (several seconds).
"""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from expc.compile import compile_spec
from expc.errors import ExpcError
from expc.project import Project

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT.parent / "shared" / "ds_configs"
HARNESS = CONFIGS / "run_check.py"

pytestmark = pytest.mark.skipif(not HARNESS.is_file(), reason=f"{CONFIGS} is absent: the real-config "
                                "check needs the shared ds_configs folder next to the checkout")


def _harness():
    spec = importlib.util.spec_from_file_location("ds_configs_run_check", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _harness() if HARNESS.is_file() else None
CASES = harness.discover() if harness else []
PROBES = list(enumerate(harness.PROBES)) if harness else []


@pytest.fixture(scope="session")
def judge():
    return harness.DeepSpeedJudge()


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """expc's verdict on one DeepSpeed section: the harness's spec (the base experiment on an H100
    box of `world` processes, gpt_debug, synthetic data, the section replacing `deepspeed`),
    compiled in-process. Returns (accepted, the rendered error, manifest data or None)."""
    folder = tmp_path_factory.mktemp("dscheck")
    counter = iter(range(10**6))

    def run(section: dict, world: int, max_steps: int):
        stem = f"c{next(counter):03d}"
        (folder / f"{stem}.json").write_text(json.dumps(section, indent=2))
        spec = folder / f"{stem}.jsonnet"
        spec.write_text(
            "local expc = import 'expc.libsonnet';\n\n"
            "expc.experiment + {\n"
            f"  hardware: expc.hardware.h100_80gb_x8 {{ name: 'h100_80gb_w{world}', procs_per_node: {world} }},\n"
            "  model: expc.models.gpt_debug,\n"
            "  data: expc.data.synthetic(),\n"
            f"  train+: {{ max_steps: {max_steps} }},\n"
            f"  deepspeed: import '{stem}.json',\n"
            "}\n")
        try:
            (manifest,) = compile_spec(spec, Project(ROOT))
        except ExpcError as err:
            return False, err.render(), None
        return True, "", manifest.data
    return run


def _named(message: str, path: str) -> bool:
    """The harness's test that a refusal names `path` (a JSON path under $.deepspeed)."""
    return path + ":" in message or path + " " in message or message.rstrip().endswith(path)


def _case_verdicts(case, judge, build) -> tuple[list[str], dict, int, bool]:
    """Disagreements for one case and its mutations; and the completed config, world, DS verdict."""
    text = case["scored"].read_text()
    cfg = json.loads(text)
    world, add, _ = harness.fit_world(cfg, case["name"])
    full = {**cfg, **add}
    accepted, why = judge.judge(full, world)
    ok, message, manifest = build(full, world, harness.max_steps_for(full))
    label = case["scored"].name
    wrong = []
    ignored = harness.IGNORED_BY_DEEPSPEED & set(cfg)
    if accepted and not ok:
        unsaid = [key for key in ignored if not (key in message and "ignore" in message.lower())]
        if not ignored or unsaid:
            wrong.append(f"{label}: DeepSpeed accepts it, expc refuses: {message}")
    elif ok and not accepted:
        wrong.append(f"{label}: DeepSpeed refuses it ({why}), expc accepts it")
    if manifest is not None:
        again, why = judge.judge(manifest["deepspeed"], world)
        if not again:
            wrong.append(f"{label}: the manifest's deepspeed section is refused by DeepSpeed: {why}")
    if accepted:
        for mutation, mutated, path in harness.mutations(full, judge.zero_fields):
            ok, message, _ = build(mutated, world, harness.max_steps_for(mutated))
            if ok or not _named(message, path):
                wrong.append(f"{label}~{mutation}: " + ("accepted" if ok else f"refused, but not at {path}: {message}"))
    return wrong, full, world, accepted


@pytest.mark.parametrize("case", CASES, ids=[c["scored"].name.removesuffix(".json") for c in CASES])
def test_real_config_verdict_matches_deepspeed(case, judge, build):
    wrong, *_ = _case_verdicts(case, judge, build)
    assert wrong == []


@pytest.mark.parametrize("probe", PROBES, ids=[f"{i}-{p[0]}-{'.'.join(p[1][0][0])}" for i, p in PROBES])
def test_probe_refused_at_its_path(probe, judge, build):
    _, (base, changes, paths) = probe
    case = next(c for c in CASES if c["scored"].name.removesuffix(".json") == base)
    cfg = json.loads(case["scored"].read_text())
    world, add, _ = harness.fit_world(cfg, case["name"])
    mutated = copy.deepcopy({**cfg, **add})
    assert judge.judge(mutated, world)[0], f"the probe's base {base} is refused by DeepSpeed"
    for path, value in changes:
        node = mutated
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    accepted, why = judge.judge(mutated, world)
    ok, message, _ = build(mutated, world, harness.max_steps_for(mutated))
    if accepted:  # the harness scores agreement here; none of today's probes is accepted
        assert ok, message
        return
    assert not ok, f"DeepSpeed refuses it ({why}); expc accepts it"
    assert any(_named(message, f"$.deepspeed.{p}") for p in paths), message


def test_ignored_top_level_keys_are_refused_saying_so(build):
    """A top-level key DeepSpeed does not read: refused, and the message says DeepSpeed ignores it
    (not a did-you-mean that suggests it means something)."""
    section = json.loads((CONFIGS / "lf_z2_autotp.resolved.json").read_text())
    ok, message, _ = build({**section, "monitor_config": {"enabled": True}}, 8, 1000)
    assert not ok
    assert "$.deepspeed._comment: unknown key '_comment': DeepSpeed ignores it (a comment" in message
    assert ("$.deepspeed.monitor_config: unknown key 'monitor_config': DeepSpeed ignores it (it reads "
            "only the keys it knows here and passes over any other), so it would do nothing") in message
    assert "comet" not in message  # no did-you-mean for a comment


def test_sequence_parallel_divides_the_world(build):
    section = json.loads((CONFIGS / "dse_autosp.resolved.json").read_text())
    ok, message, _ = build(section, 3, 1000)
    assert not ok
    assert "$.deepspeed.sequence_parallel_size: sequence_parallel_size 2 does not divide the world size 3" in message
    ok, message, _ = build({**section, "train_batch_size": section["train_batch_size"] * 2}, 2, 1000)
    assert not ok
    assert "x data-parallel world 1 (world size 2" in message and "/ sequence_parallel_size 2)" in message
