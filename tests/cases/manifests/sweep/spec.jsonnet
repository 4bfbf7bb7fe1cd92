// A sweep of two learning rates x two ZeRO stages: four manifests.
local expc = import 'expc.libsonnet';

local base = expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  data: expc.data.synthetic(),
  global_batch_size:: 4,
  micro_batch_size:: 2,
};

{
  ['lr=%s,zero=%d' % [lr, stage]]: base + expc.zero.stage(stage) + { lr:: std.parseJson(lr) }
  for lr in ['1e-4', '3e-4']
  for stage in [1, 3]
}
