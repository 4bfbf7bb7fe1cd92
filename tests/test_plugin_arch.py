"""A third-party arch plug-in, carried through the real tools: examples/expc-arch-ssm (arch "ssm",
a tiny mamba-like state-space LM) is installed with pip into a folder of its own, and every
command runs in a subprocess with that folder on PYTHONPATH. The venv is never changed, so the
rest of the suite never sees the plug-in.

Compile side: build, show, schema, diff and the errors (an unknown field, a misspelt arch, a rule
across fields, the plug-in missing). Trainer side: the declared parameter count is the torch
module's, the module is causal, and one 2-rank DeepSpeed run on CPU (the only launch here, ~20 s)
trains it with a falling validation loss.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT
from .trainer.conftest import PORTS, finish, start

BIN = Path(sys.executable).parent
PACKAGE = ROOT / "examples" / "expc-arch-ssm"

MODEL = {"arch": "ssm", "n_layer": 2, "d_model": 32, "d_state": 8, "d_conv": 4, "expand": 2, "block_size": 32,
         "vocab_size": 256}
WIDE = {**MODEL, "d_state": 16}
# Every size different, dt_rank rounded up (ceil(40 / 16) = 3), the shortest kernel.
ODD = {"arch": "ssm", "n_layer": 3, "d_model": 40, "d_state": 5, "d_conv": 1, "expand": 3, "block_size": 7,
       "vocab_size": 100}

SPEC = """\
local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage2 + expc.presets.quick_test + {{
  hardware: expc.hardware.cpu_laptop,
  model: {model},
  data: expc.data.synthetic(),
  global_batch_size:: 8,
  micro_batch_size:: 4,
  lr:: 1e-2,
  train+: {{ max_steps: 30, eval_interval: 10, eval_iters: 2, checkpoint_interval: 30 }},
}}
"""


def jsonnet_object(fields: dict) -> str:
    return "{ " + ", ".join(f"{key}: {json.dumps(value)}" for key, value in fields.items()) + " }"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The plug-in installed for real: `pip install --target`, from a copy of its folder so the
    build's leftovers (build/, *.egg-info) stay out of the repository."""
    work = tmp_path_factory.mktemp("plugin")
    source, target = work / "expc-arch-ssm", work / "site"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (info,) = target.glob("expc_arch_ssm-*.dist-info")
    assert "[expc.archs]\nssm = expc_arch_ssm.arch:ARCH\n" in (info / "entry_points.txt").read_text()
    return target


@pytest.fixture(scope="module")
def proj(tmp_path_factory) -> Path:
    """A scratch project: the real lib/, and specs of the plug-in's arch."""
    root = tmp_path_factory.mktemp("ssm_project")
    shutil.copytree(ROOT / "lib", root / "lib")
    (root / "specs").mkdir()
    typo = {("d_stat" if key == "d_state" else key): value for key, value in MODEL.items()}
    for name, model in {"ssm": MODEL, "wide": WIDE, "typo": typo, "ssn": {**MODEL, "arch": "ssn"}}.items():
        (root / "specs" / f"{name}.jsonnet").write_text(SPEC.format(model=jsonnet_object(model)))
    return root


def expc(*args, cwd: Path, site: Path | None, timeout: float = 60):
    """`expc ARGS` in a subprocess; the plug-in is visible only when `site` is given."""
    return finish(start([BIN / "expc", *args], cwd, env={"PYTHONPATH": str(site) if site else ""}), timeout)


@pytest.fixture(scope="module")
def built(site, proj) -> dict[str, Path]:
    paths = {}
    for name in ("ssm", "wide"):
        result = expc("build", f"specs/{name}.jsonnet", cwd=proj, site=site)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        (line,) = result.stdout.splitlines()
        paths[name] = proj / line
    return paths


@pytest.fixture(scope="module")
def declared(site) -> dict:
    """What the plug-in says and what its torch module is, from one subprocess: the declared and
    the built parameter counts of three models, the output shapes, and causality (changing the
    second half of a sequence leaves the first half's logits as they were)."""
    probe = f"""
import json, sys
from expc_arch_ssm.arch import ARCH
light = "torch" not in sys.modules
import torch
from expc_arch_ssm.model import build
rows = []
for m in {[MODEL, WIDE, ODD]!r}:
    torch.manual_seed(0)
    net = build({{"model": m}}, ".")
    idx = torch.randint(0, m["vocab_size"], (2, m["block_size"]))
    half = m["block_size"] // 2
    later = idx.clone()
    later[:, half:] = (later[:, half:] + 1) % m["vocab_size"]
    logits, loss = net(idx, idx)
    changed, _ = net(later, later)
    rows.append({{"declared": ARCH.parameters(m), "built": sum(p.numel() for p in net.parameters()),
                 "logits": list(logits.shape), "loss": [list(loss.shape), loss.item()],
                 "causal": torch.allclose(logits[:, :half], changed[:, :half], rtol=0, atol=1e-6),
                 "later_moves": not torch.allclose(logits[:, half:], changed[:, half:])}})
print(json.dumps({{"light": light, "rows": rows}}))
"""
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(site)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_arch_module_is_light_and_counts_the_real_parameters(declared):
    assert declared["light"], "expc_arch_ssm.arch imports torch: every `expc build` would pay for it"
    for row, model in zip(declared["rows"], (MODEL, WIDE, ODD)):
        assert row["declared"] == row["built"], model
        assert row["logits"] == [2, model["block_size"], model["vocab_size"]]
        assert row["loss"][0] == [] and math.isfinite(row["loss"][1])
        assert row["causal"] and row["later_moves"], model
    assert [row["declared"] for row in declared["rows"]] == [25056, 28128, 56360]


def test_build_writes_the_plugin_fields(built):
    manifest = json.loads(built["ssm"].read_text())
    assert manifest["model"] == MODEL
    assert json.loads(built["wide"].read_text())["model"]["d_state"] == 16


def test_show_prints_the_manifest(built, site, proj):
    text = built["ssm"].read_text()
    result = expc("show", "specs/ssm.jsonnet", cwd=proj, site=site)
    assert (result.returncode, result.stdout, result.stderr) == (0, text, "")
    assert expc("show", built["ssm"].stem[:10], cwd=proj, site=site).stdout == text


def test_unknown_field_gets_did_you_mean(site, proj):
    result = expc("build", "specs/typo.jsonnet", cwd=proj, site=site)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: 2 problems:\n"
        "- specs/typo.jsonnet $.model.d_stat: unknown key 'd_stat' (did you mean \"d_state\"?)\n"
        "    (set at specs/typo.jsonnet:4)\n"
        "- specs/typo.jsonnet $.model.d_state: missing required key 'd_state'\n")


def test_misspelt_arch_gets_did_you_mean(site, proj):
    result = expc("build", "specs/ssn.jsonnet", cwd=proj, site=site)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        'error: specs/ssn.jsonnet $.model.arch: "ssn" is not one of "gpt", "hf_causal_lm", "ssm" '
        '(did you mean "ssm"?)\n'
        "  (set at specs/ssn.jsonnet:4)\n")


def test_the_plugins_own_rule_is_applied(site, proj):
    result = expc("build", "specs/ssm.jsonnet", "--set", "model.d_conv=40", cwd=proj, site=site)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("error: specs/ssm.jsonnet $.model.d_conv: d_conv 40 is longer than block_size 32\n"
                             "  (set at --set model.d_conv=40)\n")


def test_diff_shows_the_change_and_the_parameters(built, declared, site, proj):
    text = expc("diff", "specs/ssm.jsonnet", "specs/wide.jsonnet", cwd=proj, site=site)
    assert (text.returncode, text.stderr) == (1, "")  # 1: they differ
    lines = text.stdout.splitlines()
    assert "    model.d_state: 8 -> 16" in lines
    assert "    parameters: 25.1k -> 28.1k (+12.3%)" in lines
    result = expc("diff", "specs/ssm.jsonnet", "specs/wide.jsonnet", "--json", cwd=proj, site=site)
    (pair,) = json.loads(result.stdout)["pairs"]
    assert pair["changes"] == {"model": [{"path": "model.d_state", "old": 8, "new": 16}]}
    (parameters,) = [row for row in pair["derived"] if row["name"] == "parameters"]
    assert (parameters["old"], parameters["new"]) == (declared["rows"][0]["declared"], declared["rows"][1]["declared"])


def test_schema_lists_the_plugin_fields(site, proj):
    result = expc("schema", cwd=proj, site=site)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert "- `model.arch`: `\"ssm\"`. A tiny mamba-like state-space LM (an example plug-in: expc-arch-ssm)." in lines
    assert ("- `model.d_state`: integer (>= 1, <= 1024). State size of the diagonal state-space scan, "
            "per inner channel.") in lines
    (arch,) = [line for line in lines if line.startswith("- `model.arch`: `gpt`")]
    assert arch.startswith("- `model.arch`: `gpt` \\| `hf_causal_lm` \\| `ssm`. ")


def test_without_the_plugin_the_arch_is_unknown(proj):
    before = sorted(p.name for p in (proj / "manifests").glob("*")) if (proj / "manifests").exists() else []
    result = expc("build", "specs/ssm.jsonnet", cwd=proj, site=None)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ('error: specs/ssm.jsonnet $.model.arch: "ssm" is not one of "gpt", "hf_causal_lm"\n'
                             "  (set at specs/ssm.jsonnet:4)\n")
    assert "Traceback" not in result.stderr
    after = sorted(p.name for p in (proj / "manifests").glob("*")) if (proj / "manifests").exists() else []
    assert after == before


def test_two_rank_run_trains_the_plugin_model(built, declared, site, proj):
    digest = built["ssm"].stem
    result = expc("run", digest[:12], "--master-port", next(PORTS), cwd=proj, site=site, timeout=240)
    run_dir = proj / "runs" / digest
    assert result.returncode == 0, result.stdout + result.stderr
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert (metadata["status"], metadata["step"], metadata["world_size"]) == ("completed", 30, 2)
    assert metadata["n_params"] == metadata["trainable_params"] == declared["rows"][0]["declared"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluations = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    assert [step for step, _ in evaluations] == [0, 10, 20, 30]
    (_, first), (_, last) = evaluations[0], evaluations[-1]
    assert abs(first - math.log(256)) < 0.1, "an untrained model predicts about uniformly"
    assert last < first - 1.0, evaluations
