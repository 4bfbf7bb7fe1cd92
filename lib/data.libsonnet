// Data presets: complete `data` sections, one per source the trainer reads. Each batch is a pure
// function of the seed and the global step, so none of them carries state into a resume.
//
//   local data = import 'data.libsonnet';
//   data.stdlib()                                  // the Python standard library's .py files
//   data.synthetic()                               // a learnable sequence, for tests
//   data.tokens('data/openwebtext')                // nanoGPT-style train.bin / val.bin shards
//   data.tokens('data/pile', dtype='uint32')       // vocabularies beyond 65536 tokens
//   data.text('data/shakespeare.txt')              // plain text, byte-level
//   data.jsonl('data/train.jsonl', val='data/val.jsonl', template=templates.alpaca)
//                                                  // instruction rows, for a Hugging Face base
//
// jsonl rows are objects with the fields the template names ({instruction}, {input}, {output}
// for the lib's templates). `expc build` pins each file by sha256 and checks every row has them;
// `expc show SPEC --samples 3` prints the first examples exactly as the trainer tokenizes them.
//
// Byte-level sources (stdlib, text, synthetic) need a model with vocab_size >= 256; token shards
// need one at least as large as the tokenizer (the experiment asserts both).
local templates = import 'templates.libsonnet';

local fraction(f) =
  assert std.isNumber(f) && f > 0 && f <= 0.5 : 'val_fraction must be in (0, 0.5], got %s' % [f];
  f;

local file_count(n) =
  assert std.isNumber(n) && n >= 1 && n == std.floor(n) : 'max_files must be a whole number >= 1, got %s' % [n];
  n;

local given_path(kind, path) =
  assert std.isString(path) && std.length(path) > 0 : 'data.%s(path): give the file or folder to read' % kind;
  path;

{
  stdlib(max_files=400, val_fraction=0.1):: {
    source: 'stdlib',
    max_files: file_count(max_files),
    val_fraction: fraction(val_fraction),
  },

  synthetic(val_fraction=0.1):: {
    source: 'synthetic',
    val_fraction: fraction(val_fraction),
  },

  tokens(path, dtype='uint16', val_fraction=0.05):: {
    assert std.member(['uint16', 'uint32'], dtype) : 'data.tokens: dtype must be "uint16" or "uint32", got "%s"' % dtype,
    source: 'tokens',
    path: given_path('tokens', path),
    dtype: dtype,
    val_fraction: fraction(val_fraction),
  },

  text(path, max_files=10000, val_fraction=0.1):: {
    source: 'text',
    path: given_path('text', path),
    max_files: file_count(max_files),
    val_fraction: fraction(val_fraction),
  },

  // template: a template object (templates.alpaca, templates.chat()), a lib template's name, or
  // your own string with {output} where the response starts.
  jsonl(train, val=null, template=templates.alpaca, max_length=512, truncation='error', loss_on='response',
        packing=false, val_fraction=0.1):: {
    assert std.member(['error', 'drop', 'right'], truncation) : 'data.jsonl: truncation is "error", "drop" or "right", got "%s"' % truncation,
    assert std.member(['response', 'all'], loss_on) : 'data.jsonl: loss_on is "response" or "all", got "%s"' % loss_on,
    source: 'jsonl',
    train: { path: given_path('jsonl', train) },
    [if val != null then 'val']: { path: given_path('jsonl', val) },
    template: if std.isString(template) then
      (if std.length(std.findSubstr('{', template)) > 0 then templates.custom(template) else templates.get(template))
    else template,
    max_length: max_length,
    truncation: truncation,
    loss_on: loss_on,
    packing: packing,
    val_fraction: fraction(val_fraction),
  },

  // Largest token id + 1 that a shard dtype can hold.
  dtype_limit:: { uint16: 65536, uint32: 4294967296 },
}
