"""Stage 4, pin: a document -> the same document with every file it names pinned by content.

A run must read exactly the bytes its digest stands for, so before validation:
- a Hugging Face base in a local folder (`model.source`, no `revision`) gets `files`: the sha256
  of every file in the folder, and `config`: its shape, read from config.json;
- a hub base must name a 40-hex commit `revision` (a branch or tag could move); its `config` is
  read from the local Hugging Face cache when the snapshot is there, else taken from the spec;
- each jsonl data file gets its `sha256`, and every row is checked for the fields the template
  fills (once per file content: the check is cached with the hash);
- a stdlib, text or tokens corpus gets `data.sha256`, one digest over the files it reads (the
  stdlib's are this Python's). A corpus that is not there at build time (a cluster's data, on a
  laptop) is left unpinned: such a manifest builds, diffs and plans, and `expc run` refuses it.

Pins the spec already gives are checked, not replaced: a spec may state them. Hashes go through
expc.pins' cache, so a rebuild stats files instead of reading them. Documents of other shapes
pass through unchanged; validate reports what is wrong with them.
"""
from __future__ import annotations

import copy
import json
import re

from expc.errors import ExpcError, Problem
from expc.pins import cache_dir, folder_files, hub_snapshot, resolve, sha256_file, sha256_files
from expc.project import Project

COMMIT = re.compile(r"^[0-9a-f]{40}$")
# Families whose config.json leaves tie_word_embeddings out because their default is untied.
UNTIED_BY_DEFAULT = ("llama", "mistral", "qwen2", "qwen3")


def pin(document, project: Project, memo: dict | None = None):
    """`memo`, shared by the members of one build, pins each distinct model or data section once:
    a 1000-member sweep over one corpus hashes (or looks up) its files once, not 1000 times."""
    if not isinstance(document, dict):
        return document
    # Only the model and data sections change: copying them, not the whole document, is most of
    # what pinning a sweep member costs otherwise.
    document = {k: copy.deepcopy(v) if k in ("model", "data") else v for k, v in document.items()}
    memo = {} if memo is None else memo
    problems: list[Problem] = []
    model, data = document.get("model"), document.get("data")
    if isinstance(model, dict) and model.get("arch") == "hf_causal_lm" and isinstance(model.get("source"), str):
        problems += _once(memo, "base", model, lambda: _pin_base(model, project))
    if isinstance(data, dict) and data.get("source") == "jsonl":
        problems += _once(memo, "jsonl", data, lambda: _pin_jsonl(data, project))
    if isinstance(data, dict) and (data.get("source") == "stdlib" or (
            data.get("source") in ("text", "tokens") and isinstance(data.get("path"), str))):
        problems += _once(memo, "corpus", data, lambda: _pin_corpus(data, project))
    if problems:
        raise ExpcError(problems)
    return document


def _once(memo: dict, kind: str, section: dict, pin_section) -> list[Problem]:
    """Pin `section` in place, or copy what pinning the same section gave before in this build."""
    key = (kind, json.dumps(section, sort_keys=True))
    if key not in memo:
        problems = pin_section()
        memo[key] = (copy.deepcopy(section), problems)
    pinned, problems = memo[key]
    section.clear()
    section.update(copy.deepcopy(pinned))
    return list(problems)


def _pin_base(model: dict, project: Project) -> list[Problem]:
    source, revision = model["source"], model.get("revision")
    if revision is not None:
        if not isinstance(revision, str) or not COMMIT.match(revision):
            return [Problem(f"revision {json.dumps(revision)} is not a commit: a branch or tag can move, so the "
                            "same manifest could load other weights. Pin the 40-hex commit (the hub page's "
                            f"\"Files and versions\" history, or `git ls-remote https://huggingface.co/{source} "
                            f"{revision}`)", "$.model.revision")]
        model.setdefault("files", {})
        snapshot = hub_snapshot(source, revision)
        if snapshot is not None and (snapshot / "config.json").is_file():
            return _set_config(model, snapshot / "config.json", f"{source}@{revision[:12]}/config.json")
        if "config" not in model:
            return [Problem(f"the shape of {source} at {revision[:12]} is unknown here: its config.json is not in "
                            "the local Hugging Face cache (nothing is downloaded). Give it: expc.models.hf(..., "
                            "config=expc.models.hf_configs.<name>), or download the snapshot once",
                            "$.model.config")]
        return []
    folder = resolve(project.root, source)
    if not folder.is_dir():
        hub_like = re.fullmatch(r"[\w.-]+/[\w.-]+", source) is not None
        hint = (f"; if {source!r} is a Hugging Face hub id, pin its commit: expc.models.hf({json.dumps(source)}, "
                "revision='<40-hex commit>')") if hub_like else ""
        return [Problem(f"no base model folder {source!r} in this project{hint}", "$.model.source")]
    names = folder_files(folder)
    if "config.json" not in names:
        return [Problem(f"{source} has no config.json: not a Hugging Face model folder", "$.model.source")]
    pinned = dict(zip(names, sha256_files(folder / name for name in names)))
    stated = model.get("files")
    if isinstance(stated, dict) and stated and stated != pinned:
        changed = sorted(set(stated) ^ set(pinned) | {n for n in stated if n in pinned and stated[n] != pinned[n]})
        return [Problem(f"{source} differs from the pins the spec states: {', '.join(changed)}", "$.model.files")]
    model["files"] = pinned
    return _set_config(model, folder / "config.json", f"{source}/config.json")


def _set_config(model: dict, path, label: str) -> list[Problem]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return [Problem(f"cannot read {label}: {err}", "$.model.source")]
    if raw.get("auto_map") and model.get("trust_remote_code") is not True:
        return [Problem(f"{label} names its own modelling code (auto_map), which runs on every rank: set "
                        "trust_remote_code=true in expc.models.hf(...) if you have reviewed it (it is then part of "
                        "the digest)", "$.model.trust_remote_code")]
    try:
        shape = frozen_config(raw)
    except KeyError as err:
        return [Problem(f"{label} has no {err.args[0]!r}: expc reads the Llama-style config fields "
                        "(hidden_size, num_hidden_layers, ...)", "$.model.source")]
    stated = model.get("config")
    if isinstance(stated, dict) and stated != shape:
        differ = sorted(k for k in set(stated) | set(shape) if stated.get(k) != shape.get(k))
        return [Problem(f"the spec's config differs from {label} in {', '.join(differ)}", "$.model.config")]
    model["config"] = shape
    return []


def frozen_config(raw: dict) -> dict:
    """The fields of a config.json that the estimates and reviewers need, with transformers' defaults."""
    kind = raw["model_type"]
    heads = raw["num_attention_heads"]
    return {
        "model_type": kind,
        "hidden_size": raw["hidden_size"],
        "num_hidden_layers": raw["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": raw.get("num_key_value_heads") or heads,
        "head_dim": raw.get("head_dim") or raw["hidden_size"] // heads,
        "intermediate_size": raw["intermediate_size"],
        "vocab_size": raw["vocab_size"],
        "max_position_embeddings": raw["max_position_embeddings"],
        "tie_word_embeddings": raw.get("tie_word_embeddings", kind not in UNTIED_BY_DEFAULT),
        "attention_bias": raw.get("attention_bias", kind == "qwen2"),
    }


def _pin_jsonl(data: dict, project: Project) -> list[Problem]:
    from expc.examples import check_rows, read_rows

    problems = []
    for split in ("train", "val"):
        entry = data.get(split)
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)):
            continue
        path = resolve(project.root, entry["path"])
        if not path.is_file():
            problems.append(Problem(f"no such file: {entry['path']}", f"$.data.{split}.path"))
            continue
        digest = sha256_file(path)
        if "sha256" in entry and entry["sha256"] != digest:
            problems.append(Problem(f"{entry['path']} changed since its sha256 was stated ({entry['sha256'][:12]}, "
                                    f"now {digest[:12]})", f"$.data.{split}.sha256"))
            continue
        entry["sha256"] = digest
        template = data.get("template")
        if isinstance(template, dict) and template.get("kind") in ("format", "chat") and _template_complete(template):
            marker = cache_dir() / "rows-checked" / f"{digest}-{_digest_of(template)}"
            if not marker.exists():
                try:
                    check_rows(read_rows(path, entry["path"]), template, entry["path"])
                except ExpcError as err:
                    problems += err.problems
                    continue
                try:
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.touch()
                except OSError:
                    pass
    return problems


def _pin_corpus(data: dict, project: Project) -> list[Problem]:
    from expc.pins import corpus_digest, corpus_files

    if data.get("max_files") is not None and not isinstance(data["max_files"], int):
        return []  # validate reports it
    base, files = corpus_files(data, project.root)
    if not files:
        return []  # not here: unpinned, and `expc run` says so
    digest = corpus_digest(base, files)
    if "sha256" in data and data["sha256"] != digest:
        return [Problem(f"the corpus differs from the sha256 the spec states ({str(data['sha256'])[:12]}, now "
                        f"{digest[:12]})", "$.data.sha256")]
    data["sha256"] = digest
    return []


def _template_complete(template: dict) -> bool:
    if template["kind"] == "chat":
        return True
    return all(isinstance(template.get(k), str) for k in ("prompt", "response")) and (
        template.get("prompt_no_input") is None or isinstance(template["prompt_no_input"], str))


def _digest_of(value) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
