local expc = import 'expc.libsonnet';

local base = expc.experiment + expc.zero.stage2 + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_cpu,
  global_batch_size:: 16,
  micro_batch_size:: 8,
};

expc.sweep.grid(base, { lr: ['1e-3', '2e-3', '4e-3'] })
