"""The Hugging Face Trainer side of bench/lora_vs_hf_trainer.py: one manifest's LoRA fine-tune,
trained by `transformers.Trainer` with its DeepSpeed integration instead of by expc's loop.

    DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 deepspeed --num_gpus 2 bench/hf_trainer_lora.py \
        manifests/<digest>.json --out result.json          # from the project root

The same base (AutoModelForCausalLM.from_pretrained of the pinned folder, as the manifest's
dtype and attention), the same LoraConfig through get_peft_model, the same examples (tokenized
by expc.examples), the same padding (trainer.data.instructions.pad), and the manifest's
`deepspeed` section verbatim as the Trainer's DeepSpeed config; TrainingArguments carry the
same values (the Trainer refuses a config that disagrees with them). Rank 0 writes --out: the
time of every optimizer step (perf_counter at on_step_end), the logged losses, the trainable
parameter count and the thread count. Not a test, and not part of expc.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("--out", required=True, help="rank 0 writes its figures here (JSON)")
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    manifest = json.loads(Path(args.manifest).read_text())
    threads = manifest["launch"]["threads_per_process"]
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)

    import torch

    torch.set_num_threads(threads)
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from expc.examples import Tokenizer, base_folder, examples
    from trainer.data.instructions import pad
    from trainer.models.hf import DTYPES
    from trainer.train import skip_shm_build

    skip_shm_build()  # as expc's trainer does: else DeepSpeed JIT-builds a comm op (~45 s)
    transformers.logging.set_verbosity_error()
    root = Path.cwd()
    model, adapter, data, ds = manifest["model"], manifest["adapter"], manifest["data"], manifest["deepspeed"]
    folder = base_folder(model, root)

    # ---- the same model -----------------------------------------------------------------
    transformers.set_seed(manifest["seed"])
    hf = AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=DTYPES[model["dtype"]], attn_implementation=model["attn_implementation"],
        trust_remote_code=model["trust_remote_code"], local_files_only=True)
    hf = get_peft_model(hf, LoraConfig(
        r=adapter["r"], lora_alpha=adapter["alpha"], lora_dropout=adapter["dropout"],
        target_modules=adapter["target_modules"], modules_to_save=adapter["modules_to_save"] or None,
        bias=adapter["bias"], use_rslora=adapter["use_rslora"], use_dora=adapter["use_dora"], task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in hf.parameters() if p.requires_grad)

    # ---- the same examples and batches ----------------------------------------------------
    tokenizer = Tokenizer.load(folder)
    train_examples = examples(data, model, root, "train", tokenizer)

    def collate(chosen):
        return dict(zip(("input_ids", "labels", "attention_mask"), pad(chosen, tokenizer.pad_id, "cpu")))

    # ---- the same optimisation, as TrainingArguments the Trainer checks against the config ----
    opt, sched = ds["optimizer"]["params"], ds["scheduler"]["params"]
    training_args = TrainingArguments(
        output_dir=str(Path(args.out).parent / "hf_output"),
        deepspeed=copy.deepcopy(ds),
        use_cpu=True,
        per_device_train_batch_size=ds["train_micro_batch_size_per_gpu"],
        gradient_accumulation_steps=ds["gradient_accumulation_steps"],
        learning_rate=opt["lr"], adam_beta1=opt["betas"][0], adam_beta2=opt["betas"][1], adam_epsilon=opt["eps"],
        weight_decay=opt["weight_decay"], max_grad_norm=float(ds["gradient_clipping"]),
        warmup_steps=sched["warmup_num_steps"], max_steps=manifest["train"]["max_steps"],
        bf16=ds.get("bf16", {}).get("enabled", False), fp16=ds.get("fp16", {}).get("enabled", False),
        logging_strategy="steps", logging_steps=manifest["train"]["log_interval"], logging_first_step=False,
        eval_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=False, remove_unused_columns=False,
        seed=manifest["seed"], data_seed=manifest["seed"])

    class Clock(TrainerCallback):
        def __init__(self):
            self.steps, self.losses, self.threads = [], [], None

        def on_train_begin(self, args, state, control, **kwargs):
            self.threads = torch.get_num_threads()

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append([state.global_step, time.perf_counter()])

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append([state.global_step, logs["loss"]])

    clock = Clock()
    trainer = Trainer(model=hf, args=training_args, train_dataset=train_examples, data_collator=collate,
                      callbacks=[clock])
    trainer.train()
    if trainer.is_world_process_zero():
        Path(args.out).write_text(json.dumps({
            "step_times": clock.steps, "losses": clock.losses, "trainable_params": trainable,
            "threads": clock.threads, "world_size": training_args.world_size,
            "zero_stage": trainer.model_wrapped.zero_optimization_stage()
            if hasattr(trainer.model_wrapped, "zero_optimization_stage") else None}))


if __name__ == "__main__":
    sys.exit(main())
