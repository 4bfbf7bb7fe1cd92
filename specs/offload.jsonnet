// A GPT-NeoX-style big model on one box: GPT 6.7B on 8 A100-80GB, ZeRO stage 3 with the
// optimizer state offloaded to CPU memory (the 12 bytes per parameter of fp32 Adam state leave
// the GPUs). bf16, linear warmup then linear decay, as NeoX's "linear" schedule.
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage3 + expc.zero.offload_optimizer + expc.presets.full_training
+ expc.optim.warmup_linear_decay + {
  hardware: expc.hardware.a100_80gb_x8,
  model: expc.models.gpt_6_7b,
  data: expc.data.tokens('data/pile', dtype='uint32'),
  global_batch_size:: 256,
  micro_batch_size:: 2,
  lr:: 1.2e-4,
  warmup_steps:: 2000,
  logging+: { wandb+: { tags: ['offload', 'gpt_6_7b', 'zero3'] } },
}
