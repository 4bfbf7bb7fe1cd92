// Top-level keys DeepSpeed never reads: it would accept them and do nothing.
local expc = import 'expc.libsonnet';

expc.experiment + {
  hardware: expc.hardware.cpu_laptop,
  model: expc.models.gpt_debug,
} + {
  deepspeed+: {
    _comment: 'offload to cpu',
    monitor_config: { enabled: true },
    zero_optimisation: { stage: 2 },
  },
}
