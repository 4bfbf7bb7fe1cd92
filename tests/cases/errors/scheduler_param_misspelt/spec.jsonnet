local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  global_batch_size:: 4,
  micro_batch_size:: 2,
} + {
  deepspeed+: { scheduler+: { params+: { warmup_num_stepz: 10 } } },
}
