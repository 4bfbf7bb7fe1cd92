local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
  adapter: expc.adapters.minimal,
  data: expc.data.synthetic(),
  global_batch_size:: 8,
  micro_batch_size:: 2,
}
