// Model sizes, named by size, with nanoGPT's hyperparameter names. Each is a complete `model`
// section; override a field with `models.gpt_124m { dropout: 0.1 }`.
//
//   local models = import 'models.libsonnet';
//   models.gpt_1_3b
//   models.get('gpt_350m')           // by name, with a did-you-mean on a typo
local names = import 'names.libsonnet';

local gpt(n_layer, n_head, n_embd, block_size=1024, vocab_size=50304) = {
  arch: 'gpt',
  n_layer: n_layer,
  n_head: n_head,
  n_embd: n_embd,
  block_size: block_size,
  vocab_size: vocab_size,  // GPT-2's 50257 padded to a multiple of 64
  dropout: 0.0,
  bias: false,
  assert self.n_embd % self.n_head == 0 : 'n_embd (%d) must be divisible by n_head (%d)' % [self.n_embd, self.n_head],
};

local sizes = {
  gpt_debug: gpt(2, 2, 32, block_size=32, vocab_size=256),  // for tests: trains in seconds
  gpt_cpu: gpt(4, 4, 128, block_size=128, vocab_size=256),  // byte-level, trains on a laptop CPU
  gpt_124m: gpt(12, 12, 768),
  gpt_350m: gpt(24, 16, 1024),
  gpt_760m: gpt(24, 16, 1536),
  gpt_1_3b: gpt(24, 32, 2048),
  gpt_2_7b: gpt(32, 32, 2560),
  gpt_6_7b: gpt(32, 32, 4096),
};

sizes {
  gpt:: gpt,
  get(name):: names.pick(sizes, 'model', name),
}
