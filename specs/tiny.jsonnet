// The embedded default: a byte-level GPT on the Python standard library's own source, 2 CPU
// processes on gloo, ZeRO stage 2. Trains in a few minutes on a laptop, no network.
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage2 + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_cpu,
  global_batch_size:: 16,
  micro_batch_size:: 8,
  lr:: 2e-3,
  train+: {
    max_steps: 300,
    log_interval: 10,
    eval_interval: 50,
    eval_iters: 8,
    checkpoint_interval: 100,
    keep_checkpoints: 1,
    sample_tokens: 200,
  },
  logging+: { wandb+: { tags: ['tiny', 'cpu'] } },
}
