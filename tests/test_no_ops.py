"""Settings that would build and then do nothing (or something else than they say) are refused:
at build time where the manifest alone shows it, before launch where it is the trainer that would
not act on a setting DeepSpeed accepts."""
import json

import pytest

from expc.cli import main
from expc.compile.pipeline import compile_spec
from expc.errors import ExpcError

SPEC = """local expc = import 'expc.libsonnet';
expc.experiment + expc.zero.stage1 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  data: expc.data.synthetic(),
  global_batch_size:: 4,
  micro_batch_size:: 2,
  train+: { max_steps: 40, sample_tokens: 20 },
}
"""


@pytest.fixture
def one(project):
    (project / "specs" / "one.jsonnet").write_text(SPEC)
    return project / "specs" / "one.jsonnet"


def failure(spec, *sets) -> str:
    with pytest.raises(ExpcError) as info:
        compile_spec(spec, sets=sets)
    return info.value.render()


def test_a_schedule_longer_than_the_run(one):
    assert failure(one, "deepspeed.scheduler.params.total_num_steps=50") == (
        "specs/one.jsonnet $.deepspeed.scheduler.params.total_num_steps: the WarmupCosineLR schedule is 50 steps "
        "long but train.max_steps is 40: the run would end before the learning rate has decayed; the lib's "
        "schedules follow train.max_steps (set that, not total_num_steps)\n"
        "  (set at --set deepspeed.scheduler.params.total_num_steps=50)")
    # A shorter one holds the floor at the end, on purpose: allowed. Through the knob it follows.
    assert compile_spec(one, sets=["deepspeed.scheduler.params.total_num_steps=30"])
    assert compile_spec(one, sets=["train.max_steps=50"])[0].data["deepspeed"]["scheduler"]["params"][
        "total_num_steps"] == 50


def test_warmup_max_lr_that_contradicts_the_lr(one, project):
    (project / "specs" / "decay.jsonnet").write_text(
        "local expc = import 'expc.libsonnet';\n(import 'one.jsonnet') + expc.optim.warmup_linear_decay")
    spec = project / "specs" / "decay.jsonnet"
    assert compile_spec(spec, sets=["lr=1e-3"])[0].data["deepspeed"]["scheduler"]["params"]["warmup_max_lr"] == 1e-3
    assert failure(spec, "deepspeed.scheduler.params.warmup_max_lr=0.01") == (
        "specs/decay.jsonnet $.deepspeed.scheduler.params.warmup_max_lr: the scheduler warms up to warmup_max_lr "
        "0.01, which replaces the optimizer's lr 0.0003: DeepSpeed trains at 0.01; make them equal (the lib's "
        "schedules take warmup_max_lr from the lr knob)\n"
        "  (set at --set deepspeed.scheduler.params.warmup_max_lr=0.01)")


def test_sample_tokens_without_text(one):
    message = failure(one, "data={\"source\": \"tokens\", \"path\": \"d\", \"dtype\": \"uint16\", \"val_fraction\": 0.1}")
    assert "$.train.sample_tokens: train.sample_tokens writes a text sample at the end, but data source 'tokens' " \
           "has no text to decode it with (token ids without a tokenizer): set it to 0" in message


@pytest.mark.parametrize("setting, message", [
    ('+deepspeed.compile={"deepcompile": true}',
     "$.deepspeed.compile: DeepSpeed compiles only when the training script calls engine.compile(), and expc's "
     "trainer does not (on CPU it would build C++ kernels at every launch); remove the section or set "
     '"disable": true'),
    ("+deepspeed.sequence_parallel_size=2",
     "$.deepspeed.sequence_parallel_size: expc's trainer gives every rank its own micro batches and does not "
     "split sequences, so the run would train on more samples per step than train_batch_size says; remove it or "
     "set it to 1"),
])
def test_settings_the_trainer_would_ignore_are_refused_before_launch(one, project, monkeypatch, capsys, setting,
                                                                    message):
    monkeypatch.chdir(project)
    extra = ["--set", "deepspeed.train_batch_size=2"] if "sequence" in setting else []
    with pytest.raises(SystemExit) as info:
        main(["build", "specs/one.jsonnet", "--set", setting, *extra, "--json"])
    out, err = capsys.readouterr()
    assert (info.value.code, err) == (0, "")  # DeepSpeed accepts it, so it builds
    digest = json.loads(out)[0]["digest"]
    with pytest.raises(SystemExit) as info:
        main(["run", digest[:12], "--dry-run"])
    out, err = capsys.readouterr()
    assert (info.value.code, out, err) == (1, "", f"error: {message}\n")
