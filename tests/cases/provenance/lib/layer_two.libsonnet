// Layer two: builds on layer one; sets a knob and overrides one of layer one's fields.
local one = import 'layer_one.libsonnet';

one + {
  lr:: 5e-4,
  train+: {
    max_steps: 200,
    eval_interval: 20,
  },
}
