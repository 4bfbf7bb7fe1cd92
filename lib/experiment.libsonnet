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
local batch = import 'batch.libsonnet';
local optim = import 'optim.libsonnet';

{
  local exp = self,

  // Knobs.
  global_batch_size:: 8,
  micro_batch_size:: 4,
  lr:: 3e-4,
  warmup_steps:: std.max(1, std.floor(exp.train.max_steps / 20)),
  // bf16 where the hardware has it, else fp32.
  precision:: if exp.hardware.bf16 then 'bf16' else 'fp32',

  schema: 'expc/manifest/v1',
  seed: 1337,
  hardware: error 'set `hardware`, e.g. hardware: expc.hardware.cpu_laptop',
  model: error 'set `model`, e.g. model: expc.models.gpt_cpu',
  data: { source: 'stdlib', val_fraction: 0.1, max_files: 400 },
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
  },
  launch: {
    threads_per_process: if exp.hardware.accelerator == 'cpu' then 1 else 8,
    env: {},
  },
  logging: {
    wandb: { mode: 'offline', project: 'expc', tags: [] },
  },
} + optim.adamw + optim.warmup_cosine()
