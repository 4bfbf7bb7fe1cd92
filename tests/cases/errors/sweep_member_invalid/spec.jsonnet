local expc = import 'expc.libsonnet';
local base = expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  global_batch_size:: 4,
  micro_batch_size:: 2,
};

{
  ['dropout=%s' % d]: base { model+: { dropout: d } }
  for d in [0.1, 1.5, 2]
}
