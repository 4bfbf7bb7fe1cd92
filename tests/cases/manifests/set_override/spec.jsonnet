// One experiment: the debug model on the laptop profile, ZeRO stage 2.
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  data: expc.data.synthetic(),
  global_batch_size:: 4,
  micro_batch_size:: 2,
  lr:: 3e-4,
}
