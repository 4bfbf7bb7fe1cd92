// --set changes a leaf after the lib ran, so the lib's warm-up assert never sees the new length;
// the same rule runs again at validation.
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_cpu,
  global_batch_size:: 16,
  micro_batch_size:: 8,
  train+: { max_steps: 300 },
}
