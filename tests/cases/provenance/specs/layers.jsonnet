// Three layers of mixins over the base experiment: layer one, layer two, then this spec.
local expc = import 'expc.libsonnet';
local two = import 'layer_two.libsonnet';

expc.experiment + expc.zero.stage1 + two + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  global_batch_size:: 8,
  micro_batch_size:: 4,
  train+: { max_steps: 300 },
}
