// Layer one: a schedule mixin.
{
  train+: {
    max_steps: 100,
    log_interval: 7,
  },
  logging+: { wandb+: { tags: ['layer_one'] } },
}
