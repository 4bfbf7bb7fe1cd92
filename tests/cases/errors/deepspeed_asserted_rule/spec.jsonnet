// Rules across fields that DeepSpeed asserts, and optimizer/scheduler params of the wrong type.
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.h100_80gb_x8,
  model: expc.models.gpt_debug,
  global_batch_size:: 64,
  micro_batch_size:: 8,
} + {
  deepspeed+: {
    fp16: { enabled: true },
    bf16: { enabled: true, bf16_optimizer_states: true },
    optimizer+: { params+: { lr: '3e-4' } },
    scheduler+: { params+: { warmup_num_steps: '100' } },
  },
}
