// Fine-tuning a pretrained Hugging Face model with LoRA, on 2 CPU processes (ZeRO stage 2): the
// shape of a real fine-tune, small enough for a laptop. The base (assets/tiny-llama, a randomly
// initialised Llama-shaped model with its own tokenizer) and the instruction rows are committed;
// `expc build` pins every one of their files by sha256, so the digest covers every byte the run
// reads. `make demo-finetune` trains it and leaves the adapter in runs/<digest>/export/.
//
//   expc show specs/finetune_lora.jsonnet --samples 3   # the first examples, as tokenized
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.hf('assets/tiny-llama'),
  // LoRA on every projection; the output head trains in full beside it (a base this small and
  // this random learns little through its frozen head).
  adapter: expc.adapters.full { modules_to_save: ['lm_head'] },
  data: expc.data.jsonl('assets/instructions/train.jsonl', val='assets/instructions/val.jsonl',
                        template=expc.templates.plain, max_length=64),
  global_batch_size:: 16,
  micro_batch_size:: 8,
  lr:: 1e-2,
  warmup_steps:: 5,
  train+: { max_steps: 100, log_interval: 10, eval_interval: 25, eval_iters: 2, checkpoint_interval: 25 },
  logging+: { wandb+: { tags: ['finetune', 'lora', 'cpu'] } },
}
