// --set is late-bound: the lib's warm-up assert sees the new length, and the message names the
// --set before the lib line that states the rule.
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_cpu,
  global_batch_size:: 16,
  micro_batch_size:: 8,
  warmup_steps:: 15,
  train+: { max_steps: 300 },
}
