local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  global_batch_size:: 4,
  micro_batch_size:: 2,
} + {
  deepspeed+: { optimizer: { type: 'AdamW', params: { lr: 1e-3, weight_decay: 0.1 } } },
}
