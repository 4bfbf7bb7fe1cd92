local expc = import 'expc.libsonnet';
local choice = import 'model_choice.libsonnet';

expc.experiment + expc.presets.quick_test + {
  hardware: expc.hardware.cpu_laptop,
  model: choice.narrow,
}
