// A value outside a fixed set: the message lists every allowed value and the closest one.
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_cpu,
  global_batch_size:: 16,
  micro_batch_size:: 8,
  deepspeed+: { zero_optimization+: { stage: 4 }, optimizer+: { type: 'AdamX' } },
}
