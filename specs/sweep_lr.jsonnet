// A sweep: three learning rates x two model sizes on the CPU profile, quick_test length, so the
// whole grid runs on a laptop (`expc run` each manifest). Members are named by their values,
// e.g. 'lr=1e-3,model=cpu'; the rates are written as strings to keep that spelling.
local expc = import 'expc.libsonnet';

local base = expc.experiment + expc.zero.stage2 + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_cpu,
  data: expc.data.stdlib(max_files=100),
  global_batch_size:: 16,
  micro_batch_size:: 8,
  logging+: { wandb+: { tags: ['sweep_lr'] } },
};

expc.sweep.grid(base, {
  lr: ['1e-3', '2e-3', '4e-3'],
  model: { debug: expc.models.gpt_debug, cpu: expc.models.gpt_cpu },
})
