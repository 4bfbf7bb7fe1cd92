local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.hf('assets/tiny-llama'),
  adapter: expc.adapters.minimal,
  data: expc.data.jsonl('data/rows.jsonl', template=expc.templates.alpaca),
  global_batch_size:: 8,
  micro_batch_size:: 2,
}
