// Early-stopping rules are a hidden field beside the sweep, evaluated by no member: they are read
// under the same import rules as the spec, before anything is written.
local expc = import 'expc.libsonnet';
local base = expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(), global_batch_size:: 8,
};
expc.sweep.grid(base, { lr: [1e-3, 2e-3] }) + { early_stopping:: [importstr '/etc/passwd'] }
