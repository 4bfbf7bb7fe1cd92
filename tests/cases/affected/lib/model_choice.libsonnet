local widths = import 'widths.libsonnet';
local unused = import 'never_forced.libsonnet';  // imported, never used: go-jsonnet never reads it
local models = import 'models.libsonnet';
{
  narrow: models.gpt(2, 2, widths.narrow, block_size=32, vocab_size=256),
}
