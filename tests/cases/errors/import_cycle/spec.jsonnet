local a = import 'cycle_a.libsonnet';
a.experiment
