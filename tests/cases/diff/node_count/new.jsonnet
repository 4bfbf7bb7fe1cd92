local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage3 + {
  hardware: expc.hardware.h100_80gb_nodes(4),
  model: expc.models.gpt_1_3b,
  global_batch_size:: 512,
  micro_batch_size:: 4,
}
