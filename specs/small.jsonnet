// The default small model: GPT-2 124M on one A100-40GB, the nanoGPT recipe in one file.
// Hydra users would write `python train.py model=gpt2_124m hardware=a100_40gb`; here the same
// choices are mixins, and everything derived (accumulation, schedule, precision) follows.
//
// 0.5M tokens per step (512 sequences x 1024 tokens), as GPT-3 Small: micro batch 8, so the one
// GPU accumulates 64 micro batches. Data: the standard library's source, byte-level, so it runs
// with no download; specs/small_tokens.jsonnet is the same experiment on token shards.
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage1 + expc.presets.full_training + {
  hardware: expc.hardware.a100_40gb_x1,
  model: expc.models.gpt_124m,
  global_batch_size:: 512,
  micro_batch_size:: 8,
  lr:: 6e-4,
  warmup_steps:: 2000,
  train+: { sample_tokens: 200 },
  logging+: { wandb+: { tags: ['small', 'gpt_124m'] } },
}
