local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage3 + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_cpu,
  global_batch_size:: 16,
  micro_batch_size:: 8,
  lr:: 1e-3,
}
