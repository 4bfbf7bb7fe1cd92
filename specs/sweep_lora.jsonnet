// A LoRA grid, as tuning setups sweep it: rank x alpha x learning rate over the fine-tune of
// specs/finetune_lora.jsonnet (the tiny base, 2 CPU ranks), 8 members. Each member is its own
// manifest, pinned like the base spec; `expc run` each one (or all: `expc run $(expc build
// specs/sweep_lora.jsonnet)`).
local expc = import 'expc.libsonnet';

local base = (import 'finetune_lora.jsonnet') + {
  train+: { max_steps: 50, eval_interval: 25, checkpoint_interval: 25 },
  logging+: { wandb+: { tags: ['sweep_lora'] } },
};

expc.sweep.grid(base, {
  'adapter.r': [8, 32],
  'adapter.alpha': [16, 64],
  lr: ['3e-3', '1e-2'],
})
