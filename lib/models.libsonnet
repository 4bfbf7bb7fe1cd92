// Model sizes, named by size, with nanoGPT's hyperparameter names. Each is a complete `model`
// section; override a field with `models.gpt_124m { dropout: 0.1 }`.
//
//   local models = import 'models.libsonnet';
//   models.gpt_1_3b
//   models.get('gpt_350m')           // by name, with a did-you-mean on a typo
//
// A pretrained Hugging Face causal LM, to fine-tune (arch "hf_causal_lm"):
//
//   models.hf('assets/tiny-llama')                          // a local folder: every file pinned by sha256
//   models.hf('Qwen/Qwen2.5-1.5B', revision='<40-hex commit>',
//             config=models.hf_configs.qwen2_5_1_5b)        // a hub id at a commit
//   models.hf('assets/tiny-llama', gradient_checkpointing=true, dtype='bfloat16')
//
// `expc build` fills in `files` (the folder's sha256s) and `config` (the shape, from
// config.json); a hub model read from the Hugging Face cache needs no `config`, one that is not
// there takes its shape from `config`.
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

local hf(source, revision=null, dtype='float32', attn_implementation='sdpa', gradient_checkpointing=false,
         trust_remote_code=false, config=null) =
  assert std.isString(source) && std.length(source) > 0 : 'models.hf(source): give a local folder or a hub id';
  assert revision == null || std.isString(revision) : 'models.hf: revision is a 40-hex commit (a string) or null';
  {
    arch: 'hf_causal_lm',
    source: source,
    revision: revision,
    dtype: dtype,
    attn_implementation: attn_implementation,
    gradient_checkpointing: gradient_checkpointing,
    trust_remote_code: trust_remote_code,
    [if config != null then 'config']: config,
  };

// Shapes of well-known bases (their config.json), for hub models not in the local cache.
local hf_configs = {
  qwen2_5_1_5b: {
    model_type: 'qwen2', hidden_size: 1536, num_hidden_layers: 28, num_attention_heads: 12,
    num_key_value_heads: 2, head_dim: 128, intermediate_size: 8960, vocab_size: 151936,
    max_position_embeddings: 131072, tie_word_embeddings: true, attention_bias: true,
  },
  qwen2_5_coder_1_5b: self.qwen2_5_1_5b { max_position_embeddings: 32768 },
  llama_3_2_1b: {
    model_type: 'llama', hidden_size: 2048, num_hidden_layers: 16, num_attention_heads: 32,
    num_key_value_heads: 8, head_dim: 64, intermediate_size: 8192, vocab_size: 128256,
    max_position_embeddings: 131072, tie_word_embeddings: true, attention_bias: false,
  },
};

sizes {
  gpt:: gpt,
  hf:: hf,
  hf_configs:: hf_configs,
  get(name):: names.pick(sizes, 'model', name),
}
