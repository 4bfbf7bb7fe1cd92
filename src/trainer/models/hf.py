"""The "hf_causal_lm" arch: a pretrained Hugging Face causal LM, loaded from its pinned files,
with a LoRA adapter through peft or trained in full; and its export.

    build_hf_causal_lm(manifest, root)  -> CausalLM, forward(input_ids, labels, attention_mask)
    CausalLM.export(engine, run_dir)    -> runs/<digest>/export/: the adapter in PEFT's format (or
                                           the full weights), the tokenizer, metadata.json, and a
                                           probe: logits on the first validation example

Under ZeRO-3 the base is loaded partitioned: transformers reads DeepSpeed's config through a
HfDeepSpeedConfig that must exist before from_pretrained and stay referenced (it is held weakly;
dropped, every rank would silently load the whole model). Nothing touches the network: the
files are local (a folder, or a hub snapshot already in the cache) and HF_HUB_OFFLINE is set.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from pathlib import Path

import torch
import torch.nn as nn

from expc.errors import ExpcError, Problem, did_you_mean
from expc.examples import TOKENIZER_FILES, base_folder

log = logging.getLogger("trainer")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CausalLM(nn.Module):
    """The loop's view of a Hugging Face model: batches of (input_ids, labels, attention_mask),
    the loss over the tokens whose label is not -100 (transformers shifts the labels itself)."""

    def __init__(self, hf: nn.Module, manifest: dict, folder: Path, keep=None):
        super().__init__()
        self.hf = hf
        self.manifest, self.folder = manifest, folder
        self._deepspeed_config = keep  # see the module docstring: must outlive from_pretrained

    @property
    def has_adapter(self) -> bool:
        return bool(self.manifest.get("adapter"))

    def forward(self, input_ids, labels=None, attention_mask=None):
        out = self.hf(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False)
        return out.logits, out.loss

    def export(self, engine, run_dir: Path, rank: int, probe: tuple, extra: dict) -> Path:
        """Every rank calls this together (ZeRO-3 gathers the weights collectively); rank 0
        writes runs/<digest>/export/."""
        import deepspeed

        out = run_dir / "export"
        stage3 = engine.zero_optimization_stage() == 3
        params = [p for p in self.hf.parameters() if p.requires_grad] if self.has_adapter else list(self.hf.parameters())
        self.eval()
        with torch.no_grad():
            logits, _ = self(*probe)  # every rank: under ZeRO-3 the forward gathers collectively
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=stage3):
            if rank == 0:
                tmp = run_dir / ".export.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                self._save_weights(tmp)
                for name in TOKENIZER_FILES:
                    if (self.folder / name).is_file():
                        shutil.copy2(self.folder / name, tmp / name)
                from safetensors.torch import save_file

                save_file({"input_ids": probe[0].cpu().contiguous(), "logits": logits.float().cpu().contiguous()},
                          str(tmp / "probe.safetensors"))
                (tmp / "metadata.json").write_text(json.dumps(self._metadata(extra), indent=2, sort_keys=True) + "\n")
                shutil.rmtree(out, ignore_errors=True)
                os.replace(tmp, out)
        return out

    def _save_weights(self, folder: Path) -> None:
        """The adapter in PEFT's format (naming the pinned base, as the manifest does), or the
        whole fine-tuned model."""
        if self.has_adapter:
            config = self.hf.peft_config["default"]
            config.base_model_name_or_path = self.manifest["model"]["source"]
            config.revision = self.manifest["model"]["revision"]
        self.hf.save_pretrained(str(folder), safe_serialization=True)

    def _metadata(self, extra: dict) -> dict:
        model, data = self.manifest["model"], self.manifest["data"]
        return {
            "kind": "adapter" if self.has_adapter else "full",
            "base": {"source": model["source"], "revision": model["revision"], "files": model["files"],
                     "config": model["config"]},
            "adapter": self.manifest.get("adapter"),
            "data": {split: data[split] for split in ("train", "val") if split in data},
            "template": data["template"]["name"],
            **extra,
        }


def build_hf_causal_lm(manifest: dict, root: Path) -> CausalLM:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    model, adapter, ds = manifest["model"], manifest.get("adapter"), manifest["deepspeed"]
    folder = base_folder(model, root)
    keep = None
    if (ds.get("zero_optimization") or {}).get("stage") == 3:
        from transformers.integrations import HfDeepSpeedConfig

        keep = HfDeepSpeedConfig(copy.deepcopy(ds))  # before from_pretrained: loads partitioned
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=DTYPES[model["dtype"]], attn_implementation=model["attn_implementation"],
        trust_remote_code=model["trust_remote_code"], local_files_only=True)
    if model["gradient_checkpointing"]:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if adapter:
            hf.enable_input_require_grads()  # frozen embeddings: checkpointed layers still need a grad path
    if adapter:
        check_targets(hf, adapter)
        from peft import LoraConfig, get_peft_model

        hf = get_peft_model(hf, LoraConfig(
            r=adapter["r"], lora_alpha=adapter["alpha"], lora_dropout=adapter["dropout"],
            target_modules=adapter["target_modules"], modules_to_save=adapter["modules_to_save"] or None,
            bias=adapter["bias"], use_rslora=adapter["use_rslora"], use_dora=adapter["use_dora"],
            task_type="CAUSAL_LM"))
    return CausalLM(hf, manifest, folder, keep)


def check_targets(hf: nn.Module, adapter: dict) -> None:
    """Every target_modules and modules_to_save entry names a real module (PEFT itself complains
    only when none matches). Every rank checks the same names, so all stop together."""
    names = [name for name, _ in hf.named_modules() if name]
    leaves = sorted({name.rpartition(".")[2] for name, m in hf.named_modules()
                     if isinstance(m, (nn.Linear, nn.Embedding))})
    targets = [] if adapter["target_modules"] == "all-linear" else adapter["target_modules"]
    wanted = [("target_modules", i, t) for i, t in enumerate(targets)]
    wanted += [("modules_to_save", i, t) for i, t in enumerate(adapter["modules_to_save"])]
    problems = [Problem(f"no module named {target!r} in the base{did_you_mean(target.rpartition('.')[2], leaves)}; "
                        f"its layers: {', '.join(leaves)}", f"$.adapter.{field}[{i}]")
                for field, i, target in wanted if not any(n == target or n.endswith("." + target) for n in names)]
    if problems:
        raise ExpcError(problems)
