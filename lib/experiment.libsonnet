// The base experiment. A spec starts from it and mixes in hardware, a model, a ZeRO stage, an
// optimizer, a schedule and presets:
//
//   local expc = import 'expc.libsonnet';
//   expc.experiment + expc.zero.stage2 + expc.presets.quick_test + {
//     hardware: expc.hardware.cpu_laptop,
//     model: expc.models.gpt_cpu,
//     global_batch_size:: 16, micro_batch_size:: 8, lr:: 1e-3,
//   }
//
// Fields ending in `::` are knobs: they shape the manifest but are not in it. Derived values
// (gradient accumulation, precision, schedule length) read the knobs through `self`, so a later
// mixin that changes the hardware or the batch recomputes them.
//
// Invariants are `assert`s here, so a bad combination stops at the line that states the rule:
// precision the hardware lacks, warmup longer than the run, a vocabulary too small for the data.
local batch = import 'batch.libsonnet';
local data = import 'data.libsonnet';
local optim = import 'optim.libsonnet';
local knobs = import 'knobs.libsonnet';
{
  local exp = self,

  // Knobs.
  global_batch_size:: 8,
  micro_batch_size:: 4,
  lr:: 3e-4,
  warmup_steps:: std.max(1, std.floor(exp.train.max_steps / 20)),
  // bf16 where the hardware has it, else fp32. 'fp16' turns on DeepSpeed's dynamic loss scaling.
  precision:: if exp.hardware.bf16 then 'bf16' else 'fp32',

  assert std.member(['bf16', 'fp16', 'fp32'], exp.precision) :
         'precision must be "bf16", "fp16" or "fp32", got "%s"' % exp.precision,
  assert exp.precision != 'bf16' || exp.hardware.bf16 :
         'precision "bf16" needs hardware with bf16; "%s" has none (use "fp32")' % exp.hardware.name,
  assert exp.precision != 'fp16' || exp.hardware.fp16 :
         'precision "fp16" needs hardware with fp16; "%s" has none (use "fp32")' % exp.hardware.name,
  assert std.isNumber(exp.micro_batch_size) && exp.micro_batch_size >= 1 && exp.micro_batch_size == std.floor(exp.micro_batch_size) :
         'micro_batch_size must be a whole number >= 1, got %s' % [exp.micro_batch_size],
  assert exp.warmup_steps < exp.train.max_steps :
         'warmup_steps (%s) must be shorter than train.max_steps (%s)' % [exp.warmup_steps, exp.train.max_steps],
  assert exp.model.arch != 'gpt' || exp.data.source == 'tokens' || exp.model.vocab_size >= 256 :
         'data source "%s" is byte-level: model.vocab_size must be >= 256, got %d' % [exp.data.source, exp.model.vocab_size],
  assert exp.model.arch != 'gpt' || exp.data.source != 'tokens' || exp.model.vocab_size <= data.dtype_limit[exp.data.dtype] :
         'model.vocab_size %d does not fit %s token shards; use data.tokens(path, dtype="uint32")' % [exp.model.vocab_size, exp.data.dtype],

  schema: 'expc/manifest/v1',
  seed: 1337,
  hardware: error 'set `hardware`, e.g. hardware: expc.hardware.cpu_laptop',
  model: error 'set `model`, e.g. model: expc.models.gpt_cpu',
  data: data.stdlib(),
  train: {
    max_steps: 1000,
    log_interval: 10,
    eval_interval: 100,
    eval_iters: 10,
    checkpoint_interval: 250,
    keep_checkpoints: 2,
    sample_tokens: 0,
  },
  deepspeed: {
    train_batch_size: exp.global_batch_size,
    train_micro_batch_size_per_gpu: exp.micro_batch_size,
    gradient_accumulation_steps: batch.accumulation(exp.global_batch_size, exp.micro_batch_size,
                                                    batch.world_size(exp.hardware)),
    gradient_clipping: 1.0,
    steps_per_print: 1000000,  // the trainer logs; keep DeepSpeed's own prints quiet
    zero_optimization: { stage: 0 },
    bf16: { enabled: exp.precision == 'bf16' },
    // Present only for fp16 runs, so bf16 and fp32 manifests do not carry an unused section.
    [if exp.precision == 'fp16' then 'fp16']: {
      enabled: true,
      loss_scale: 0,  // 0 = dynamic
      initial_scale_power: 16,
      loss_scale_window: 1000,
      hysteresis: 2,
      min_loss_scale: 1,
    },
  },
  launch: {
    threads_per_process: if exp.hardware.accelerator == 'cpu' then 1 else 8,
    env: {},
  },
  logging: {
    wandb: { mode: 'offline', project: 'expc', tags: [] },
  },
  // The knobs, declared (knobs.libsonnet): a hidden field that is not one is refused, and each
  // value is checked against its declaration. A spec declares its own with `knobs+:: {...}`.
  // Imported at the top, not here: an import in a field's body is evaluated again for every
  // experiment made from this one (each sweep member), and asks the importer each time.
  knobs:: knobs,
} + optim.adamw + optim.warmup_cosine()
