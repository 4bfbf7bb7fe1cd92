// A realistic fine-tune: LoRA on Qwen2.5-1.5B, one 24 GB card (RTX 4090), bf16, ZeRO stage 2,
// gradient checkpointing, Alpaca-style rows. The base is a hub id pinned to a commit: nothing is
// downloaded at build time, so its shape comes from the lib (expc.models.hf_configs). It builds
// and plans anywhere; it runs where the snapshot is in the Hugging Face cache and the rows are in
// data/ (`huggingface-cli download Qwen/Qwen2.5-1.5B --revision <commit>`, then rebuild: the
// build reads the real config.json from the cache and must agree with the one given here).
//
// The revision below stands for the commit you reviewed: replace it with the one you pin. The
// rows are the committed example rows; point data.jsonl at your own.
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + expc.presets.full_training + {
  hardware: expc.hardware.rtx4090_24gb,
  model: expc.models.hf('Qwen/Qwen2.5-1.5B', revision='8faed761d45a263340a0528343f099c05c9a4323',
                        config=expc.models.hf_configs.qwen2_5_1_5b, dtype='bfloat16', gradient_checkpointing=true),
  adapter: expc.adapters.standard,
  data: expc.data.jsonl('assets/instructions/train.jsonl', val='assets/instructions/val.jsonl',
                        template=expc.templates.alpaca, max_length=1024),
  global_batch_size:: 32,
  micro_batch_size:: 4,
  lr:: 2e-4,
  warmup_steps:: 30,
  train+: { max_steps: 1000, eval_interval: 100, checkpoint_interval: 200 },
  logging+: { wandb+: { tags: ['finetune', 'lora', 'qwen2.5-1.5b'] } },
}
