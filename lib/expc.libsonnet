// The whole library behind one import: `local expc = import 'expc.libsonnet';`
{
  experiment:: import 'experiment.libsonnet',
  hardware:: import 'hardware.libsonnet',
  models:: import 'models.libsonnet',
  zero:: import 'zero.libsonnet',
  optim:: import 'optim.libsonnet',
  presets:: import 'presets.libsonnet',
  batch:: import 'batch.libsonnet',
  names:: import 'names.libsonnet',
}
