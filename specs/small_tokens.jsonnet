// The same experiment as small.jsonnet on another dataset: nanoGPT-style OpenWebText token
// shards (train.bin / val.bin of uint16 GPT-2 token ids, made by nanoGPT's prepare.py). Importing
// a spec from its own folder is allowed, so the variant states only what differs.
local expc = import 'expc.libsonnet';
local small = import 'small.jsonnet';

small + {
  data: expc.data.tokens('data/openwebtext'),
  train+: { sample_tokens: 0 },  // token ids have no tokenizer here to decode a sample with
  logging+: { wandb+: { tags: ['small', 'gpt_124m', 'openwebtext'] } },
}
