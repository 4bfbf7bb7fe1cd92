// A lib assert that fails in some members of a sweep: one problem for the cause, naming the
// members it fails in; the others are not reported.
local expc = import 'expc.libsonnet';

local base = expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  global_batch_size:: 4,
  micro_batch_size:: 2,
};

expc.sweep.grid(base, { warmup_steps: [10, 60], lr: ['1e-3', '2e-3'] })
