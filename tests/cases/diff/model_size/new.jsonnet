local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_124m,
  global_batch_size:: 16,
  micro_batch_size:: 4,
  lr:: 1e-3,
}
