local expc = import 'expc.libsonnet';
local base = expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, global_batch_size:: 4, micro_batch_size:: 2 };

{
  lr_small: base { lr:: 1e-4 },
  lr_small: base { lr:: 1e-3 },
}
