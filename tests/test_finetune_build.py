"""Fine-tuning on the build side, torch-free: pins and their cache, instruction examples exactly
as the trainer sees them (`expc show --samples`), the max-length policies, the estimates of a
LoRA run, and the hub-model checks. The trainer side is tests/trainer/test_finetune.py."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from expc import estimate
from expc.compile import compile_spec
from expc.errors import ExpcError
from expc.examples import Tokenizer, examples
from expc.pins import HashCache, verify
from expc.project import Project

from .conftest import ROOT
from .test_errors import run_cli

SPEC = ROOT / "specs" / "finetune_lora.jsonnet"


@pytest.fixture
def ft_project(tmp_path):
    """A copy of the project's lib, specs and assets (pins are made of these files' bytes)."""
    for name in ("lib", "specs", "assets"):
        shutil.copytree(ROOT / name, tmp_path / name)
    return tmp_path


def test_the_spec_pins_every_file_of_the_base_and_the_data():
    [m] = compile_spec(SPEC, Project(ROOT))
    model, data = m.data["model"], m.data["data"]
    assert sorted(model["files"]) == ["chat_template.jinja", "config.json", "generation_config.json",
                                      "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    import hashlib

    for name, digest in model["files"].items():
        assert hashlib.sha256((ROOT / "assets/tiny-llama" / name).read_bytes()).hexdigest() == digest
    assert data["train"]["sha256"] == hashlib.sha256((ROOT / data["train"]["path"]).read_bytes()).hexdigest()
    assert model["config"] == {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                               "intermediate_size": 128, "vocab_size": 384, "max_position_embeddings": 256,
                               "tie_word_embeddings": False, "attention_bias": False}


def test_show_samples_prints_the_examples_as_tokenized(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli(["show", "specs/finetune_lora.jsonnet", "--samples", "2"], capsys)
    assert (code, err) == (0, "")
    assert out == """\
example 1 of 400 (assets/instructions/train.jsonl:1): 15 tokens, 10 prompt + 5 response, 5 with loss
  prompt   | <|bos|>Write the word in capitals.
           | tiger
           | 
  response | TIGER<|eos|>

example 2 of 400 (assets/instructions/train.jsonl:2): 15 tokens, 10 prompt + 5 response, 5 with loss
  prompt   | <|bos|>Write the word in capitals.
           | tiger
           | 
  response | TIGER<|eos|>
"""


def test_show_samples_of_a_gpt_spec_says_what_it_shows(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli(["show", "specs/tiny.jsonnet", "--samples", "1"], capsys)
    assert (code, out) == (1, "")
    assert err == ('error: $.data.source: --samples shows instruction examples (data source "jsonl"); this manifest '
                   'reads "stdlib"\n')


def test_a_row_over_max_length_is_located_under_the_error_policy(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli(["show", "specs/finetune_lora.jsonnet", "--set", "data.max_length=12",
                              "--samples", "1"], capsys)
    assert (code, out) == (1, "")
    assert err == ("error: assets/instructions/train.jsonl:1: the example is 15 tokens (10 prompt + 5 response), "
                   'longer than max_length 12: raise data.max_length, or set truncation to "drop" or "right"\n')


def test_drop_and_right_truncation():
    [full] = compile_spec(SPEC, Project(ROOT))
    whole = examples(full.data["data"], full.data["model"], ROOT, "train")
    made = {}
    for policy in ("drop", "right"):
        [m] = compile_spec(SPEC, Project(ROOT), sets=["data.max_length=12", f"data.truncation={policy}"])
        made[policy] = examples(m.data["data"], m.data["model"], ROOT, "train")
    # drop: exactly the examples that fit, untouched
    assert made["drop"] == [e for e in whole if len(e.ids) <= 12]
    # right: every example whose prompt fits, cut to 12 tokens; one with no response token left is dropped
    cut = [e for e in whole if e.prompt_tokens < 12]
    assert [e.ids for e in made["right"]] == [e.ids[:12] for e in cut]
    assert all(e.trained_tokens > 0 for e in made["right"]) and 0 < len(made["drop"]) < len(cut) < len(whole)


def test_loss_on_all_tokens_labels_the_prompt_too():
    [m] = compile_spec(SPEC, Project(ROOT), sets=["data.loss_on=all"])
    first = examples(m.data["data"], m.data["model"], ROOT, "train")[0]
    assert first.labels == first.ids


def test_a_chat_template_renders_a_conversation():
    tokenizer = Tokenizer.load(ROOT / "assets/tiny-llama")
    text = tokenizer.render_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert text == "<|user|>hi\n<|assistant|>"


def test_the_hash_cache_rehashes_only_what_changed(tmp_path):
    cache = HashCache(tmp_path / "cache.json")
    data = tmp_path / "rows.jsonl"
    data.write_text("one\n")
    first = cache.sha256(data)
    cache.save()
    reread = HashCache(tmp_path / "cache.json")
    assert reread.sha256(data) == first and not reread._dirty  # from the cache, no read
    data.write_text("two\n")  # same size, new content and mtime
    assert reread.sha256(data) != first and reread._dirty


def test_verify_names_a_missing_and_a_stray_file(ft_project):
    [m] = compile_spec(ft_project / "specs/finetune_lora.jsonnet", Project(ft_project))
    os.remove(ft_project / "assets/tiny-llama/generation_config.json")
    (ft_project / "assets/tiny-llama/pytorch_model.bin").write_bytes(b"weights")
    with pytest.raises(ExpcError) as err:
        verify(m.data, ft_project)
    assert err.value.render() == (
        "2 problems:\n"
        "- $.model.files: assets/tiny-llama/pytorch_model.bin is in the base model folder but not pinned by the "
        "manifest: rebuild the spec, or remove the file\n"
        "- $.model.files[\"generation_config.json\"]: assets/tiny-llama/generation_config.json: the manifest pins "
        "this file, and it is missing")


def test_a_rebuild_after_an_edit_pins_the_new_content(ft_project):
    project = Project(ft_project)
    [before] = compile_spec(ft_project / "specs/finetune_lora.jsonnet", project)
    rows = ft_project / "assets/instructions/val.jsonl"
    rows.write_text(rows.read_text() + json.dumps({"instruction": "Add 1 and 1.", "input": "", "output": "2"}) + "\n")
    [after] = compile_spec(ft_project / "specs/finetune_lora.jsonnet", project)
    assert before.digest != after.digest  # the digest covers the data's bytes
    assert before.data["data"]["val"]["sha256"] != after.data["data"]["val"]["sha256"]


def test_a_hub_base_at_a_commit_builds_and_plans_without_its_files():
    [m] = compile_spec(ROOT / "specs" / "qwen_lora.jsonnet", Project(ROOT))
    model = m.data["model"]
    assert model["files"] == {} and len(model["revision"]) == 40
    assert estimate.parameter_count(model) == 1_543_714_304  # Qwen2.5-1.5B's published 1.54B
    assert 0 < estimate.trainable_parameters(m.data) < 0.01 * estimate.parameter_count(model)


def test_lora_estimates_count_the_adapter_only():
    [m] = compile_spec(SPEC, Project(ROOT))
    manifest = m.data
    # r 64 on q, k, v, o (64 -> 64, 64 -> 32, 64 -> 32, 64 -> 64) and gate, up, down (64 <-> 128), 2 layers,
    # plus the head trained in full (64 x 384)
    lora = 64 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 128) * 3) * 2
    assert estimate.trainable_parameters(manifest) == lora + 64 * 384
    memory = estimate.memory_per_device(manifest)
    assert memory.gradients < memory.parameters


def test_a_text_corpus_is_pinned_and_checked(tmp_path):
    shutil.copytree(ROOT / "lib", tmp_path / "lib")
    (tmp_path / "specs").mkdir()
    (tmp_path / "corpus").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "corpus" / name).write_text(f"text of {name}\n" * 200)
    spec = tmp_path / "specs" / "text.jsonnet"
    spec.write_text("local expc = import 'expc.libsonnet';\nexpc.experiment + { hardware: expc.hardware.cpu_laptop, "
                    "model: expc.models.gpt_debug, data: expc.data.text('corpus') }\n")
    [m] = compile_spec(spec, Project(tmp_path))
    import hashlib

    lines = "".join(f"{n}\0{hashlib.sha256((tmp_path / 'corpus' / n).read_bytes()).hexdigest()}\n"
                    for n in ("a.txt", "b.txt"))
    assert m.data["data"]["sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    verify(m.data, tmp_path)
    (tmp_path / "corpus" / "b.txt").write_text("other text\n")
    with pytest.raises(ExpcError) as err:
        verify(m.data, tmp_path)
    assert err.value.render().startswith("$.data.sha256: corpus changed since the build (sha256 ")


def test_data_that_is_not_here_builds_unpinned_and_only_a_dry_run_accepts_it(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    [m] = compile_spec(ROOT / "specs" / "large.jsonnet", Project(ROOT))
    assert "sha256" not in m.data["data"]  # data/openwebtext is on the cluster, not here
    code, out, err = run_cli(["run", m.digest[:12], "--dry-run", "--launcher", "slurm"], capsys)
    assert code == 0 and out.startswith("# launcher: slurm\n")
    assert err == ("warning: $.data.sha256: the manifest does not pin data/openwebtext: it was not there when the "
                   "manifest was built. Build the spec where the data is (the build adds data.sha256), then run "
                   "that manifest (a run refuses this)\n")
    code, out, err = run_cli(["run", m.digest[:12], "--launcher", "slurm"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("error: $.data.sha256: the manifest does not pin data/openwebtext")


def test_packing_joins_examples_in_order_up_to_max_length():
    from expc.examples import pack

    [m] = compile_spec(SPEC, Project(ROOT))
    made = examples(m.data["data"], m.data["model"], ROOT, "train")
    packed = pack(made, 64)
    assert [t for e in packed for t in e.ids] == [t for e in made for t in e.ids]  # nothing lost or reordered
    assert [t for e in packed for t in e.labels] == [t for e in made for t in e.labels]
    assert all(len(e.ids) <= 64 for e in packed)
    # greedy: no sequence had room for the example that starts the next one
    starts = [e.where for e in packed]
    lengths = {e.where: len(e.ids) for e in made}
    assert all(len(a.ids) + lengths[b] > 64 for a, b in zip(packed, starts[1:]))
