local expc = import 'expc.libsonnet';
local laptop = import 'laptop.libsonnet';

expc.experiment + expc.presets.quick_test + {
  hardware: laptop.profile,
  model: expc.models.gpt_debug,
}
