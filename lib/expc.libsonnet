// The whole library behind one import: `local expc = import 'expc.libsonnet';`
//
//   experiment  the base experiment (knobs: global_batch_size, micro_batch_size, lr,
//               warmup_steps, precision)                                  experiment.libsonnet
//   hardware    profiles named for the hardware, h100_80gb_nodes(n)       hardware.libsonnet
//   models      GPT sizes from gpt_debug to gpt_6_7b; hf(source, revision) models.libsonnet
//   adapters    lora(r, alpha, ...), presets minimal, standard, full      adapters.libsonnet
//   data        stdlib(), synthetic(), tokens(path), text(path), jsonl()  data.libsonnet
//   templates   alpaca, plain, chat(), custom(text): prompt templates     templates.libsonnet
//   zero        stage0..stage3, stage(n), offload_optimizer/param         zero.libsonnet
//   optim       adamw, adamw_with(), warmup_cosine(), warmup_linear...     optim.libsonnet
//   presets     quick_test, full_training, fp32, bf16, fp16               presets.libsonnet
//   batch       world_size, accumulation, global_batch, tokens_per_step   batch.libsonnet
//   sweep       grid, zip, random, replicas, variants, stop_when...         sweep.libsonnet
//   search      declare(experiment, space, ...): Bayesian search, expc search  search.libsonnet
//   names       pick(table, kind, name) with did-you-mean                 names.libsonnet
//   knobs       the experiment's knobs, declared with a JSON Schema each  knobs.libsonnet
{
  experiment:: import 'experiment.libsonnet',
  hardware:: import 'hardware.libsonnet',
  models:: import 'models.libsonnet',
  adapters:: import 'adapters.libsonnet',
  data:: import 'data.libsonnet',
  templates:: import 'templates.libsonnet',
  zero:: import 'zero.libsonnet',
  optim:: import 'optim.libsonnet',
  presets:: import 'presets.libsonnet',
  batch:: import 'batch.libsonnet',
  sweep:: import 'sweep.libsonnet',
  search:: import 'search.libsonnet',
  names:: import 'names.libsonnet',
  knobs:: import 'knobs.libsonnet',
}
