local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.hf('assets/tiny-llama'),
  adapter: expc.adapters.minimal,
  data: expc.data.jsonl('assets/instructions/train.jsonl', template=expc.templates.plain, max_length=64),
  global_batch_size:: 8,
  micro_batch_size:: 2,
}
