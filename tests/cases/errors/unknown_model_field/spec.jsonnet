local expc = import 'expc.libsonnet';
local models = expc.models;

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: models.gpt_dbug,
  global_batch_size:: 4,
  micro_batch_size:: 2,
}
