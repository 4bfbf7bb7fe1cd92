"""`expc export`: a completed fine-tune's export, runs/<digest>/export/, and with --merge the
base and adapter merged into one model (runs/<digest>/export/merged/), loadable by plain
transformers without peft.

The trainer writes the export itself when a run completes (adapter in PEFT's format, tokenizer,
metadata.json, a logits probe); this command finds it, and merges on request. Merging loads the
base from its pinned files, checked first, so the merged weights are those of the reviewed base.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from expc.compile.canonical import load_manifest
from expc.errors import ExpcError
from expc.pins import verify
from expc.project import find_manifest, find_project
from trainer.rundir import read_metadata  # light: no torch


def export(ref: str, merge: bool = False, runs_dir: Path | str | None = None) -> tuple[Path, list[str]]:
    """(the export folder, the lines to print). `runs_dir`: where the run lives when not in the
    default runs folder."""
    path = find_manifest(ref)
    manifest, digest = load_manifest(path)
    project = find_project(path).with_runs(runs_dir)
    run_dir = project.runs / digest
    folder = run_dir / "export"
    if not (folder / "metadata.json").is_file():
        status = read_metadata(run_dir).get("status")
        why = ("it has not run" if status is None else f"its run is {status}" if status != "completed"
               else "it is not a fine-tune (only hf_causal_lm runs export)")
        raise ExpcError(f"{digest[:12]} has no export: {why}")
    info = json.loads((folder / "metadata.json").read_text())
    lines = [f"{project.relative(folder)}/: {info['kind']} of {info['base']['source']}, step {info['step']}"]
    lines += [f"  {p.name}" for p in sorted(folder.iterdir()) if p.is_file()]
    if merge:
        if info["kind"] != "adapter":
            raise ExpcError(f"{digest[:12]} trained every weight: its export is already a whole model, nothing to merge")
        merged = merge_adapter(manifest, project.root, folder)
        lines.append(f"merged: {project.relative(merged)}/ (base + adapter, loadable without peft)")
    return folder, lines


def merge_adapter(manifest: dict, root: Path, folder: Path) -> Path:
    verify(manifest, root)  # the base must be the pinned one
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from peft import PeftModel

    from expc.examples import TOKENIZER_FILES, base_folder

    transformers.logging.set_verbosity_error()
    model = manifest["model"]
    base = transformers.AutoModelForCausalLM.from_pretrained(
        str(base_folder(model, root)), dtype=getattr(torch, model["dtype"]), local_files_only=True,
        trust_remote_code=model["trust_remote_code"])
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    out, tmp = folder / "merged", folder / ".merged.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, tmp / name)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out

